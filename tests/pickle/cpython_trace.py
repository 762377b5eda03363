"""Run a pickle through CPython's own C unpickler with every import replaced by a recording stub.

This is how the tests know that a hand-assembled hostile fixture really reaches the call it is
named after: `find_class` never returns a real function, only a stub class that records what was
imported and what was called (and whose attributes are more stubs), plus a handful of harmless
real objects that the attacks lean on (getattr, partial, Namespace, operator getters, copyreg's
extension registry, which is restored afterwards). Nothing dangerous can run.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import bz2
import collections
import copyreg
import functools
import gzip
import io
import lzma
import operator
import pickle
import types
import zlib
from dataclasses import dataclass, field
from typing import Any

REAL: dict[str, Any] = {
    "builtins.getattr": getattr, "builtins.str": str, "builtins.dict": dict, "builtins.list": list,
    "builtins.tuple": tuple, "builtins.set": set, "builtins.object": object,
    "argparse.Namespace": argparse.Namespace, "types.SimpleNamespace": types.SimpleNamespace,
    "functools.partial": functools.partial, "functools.reduce": functools.reduce,
    "operator.attrgetter": operator.attrgetter, "operator.methodcaller": operator.methodcaller,
    "operator.getitem": operator.getitem, "_operator.attrgetter": operator.attrgetter,
    "_operator.methodcaller": operator.methodcaller, "_operator.getitem": operator.getitem,
    "collections.defaultdict": collections.defaultdict, "collections.OrderedDict": collections.OrderedDict,
    "copyreg.add_extension": copyreg.add_extension,
    "copyreg._inverted_registry": copyreg._inverted_registry,  # type: ignore[attr-defined]
    "copyreg._extension_cache": copyreg._extension_cache,  # type: ignore[attr-defined]
}


@dataclass
class Trace:
    imported: list[str] = field(default_factory=list)  # every name find_class was asked for
    called: list[str] = field(default_factory=list)  # every stub called (REDUCE, NEWOBJ, ...)
    errors: list[str] = field(default_factory=list)  # how each load ended, if not cleanly
    loads: int = 0

    def reached(self, text: str) -> bool:
        return any(text in name for name in self.imported + self.called)


class _Meta(type):
    trace: Trace

    def __getattr__(cls, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _stub(f"{cls.__qualname__}.{attr}", cls.trace)

    def __getitem__(cls, key: Any) -> Any:
        return _stub(f"{cls.__qualname__}.{key}", cls.trace)


class _StubBase(metaclass=_Meta):
    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        cls.trace.called.append(cls.__qualname__)
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


def _stub(dotted: str, trace: Trace) -> Any:
    cls = _Meta(dotted, (_StubBase,), {})
    cls.__qualname__ = dotted
    cls.trace = trace
    return cls


class _Recorder(pickle.Unpickler):
    def __init__(self, stream: Any, trace: Trace, proto: int) -> None:
        super().__init__(stream)
        self.trace = trace
        self.proto = proto

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3:  # what the default find_class does with fix_imports
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        self.trace.imported.append(f"{module}.{name}")
        parts = name.split(".")
        if len(parts) > 1 and self.proto < 4:
            raise AttributeError(f"Can't get attribute {name!r} on <module {module!r}>")
        obj = REAL.get(f"{module}.{parts[0]}")
        obj = obj if obj is not None else _stub(f"{module}.{parts[0]}", self.trace)
        for part in parts[1:]:
            obj = getattr(obj, part)
        return obj


def unwrap(data: bytes) -> bytes:
    """What `gzip.open` & co. hand to the unpickler (the whole stream, or as much as decodes)."""
    for magic, opener in ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open),
                          (b"\x5d\x00\x00", functools.partial(lzma.open, format=lzma.FORMAT_ALONE))):
        if data.startswith(magic):
            out = bytearray()
            try:
                with opener(io.BytesIO(data)) as fh:
                    while chunk := fh.read(65536):
                        out += chunk
            except (EOFError, OSError, lzma.LZMAError):
                pass
            return bytes(out)
    if data[:1] == b"\x78":
        try:
            return zlib.decompressobj().decompress(data)
        except zlib.error:
            return data
    return data


def trace(data: bytes, max_loads: int = 2000, *, peek: bool = False) -> Trace:
    """Load every pickle of the stream, as a loader calling load() repeatedly would.

    The stream is an io.BytesIO, which has no peek(): what torch.load hands the unpickler for a
    zip member. With `peek`, a BufferedReader over it: what `pickle.load(open(path, "rb"))` sees.
    """
    data = unwrap(data)
    result = Trace()
    stream: Any = io.BufferedReader(io.BytesIO(data)) if peek else io.BytesIO(data)
    saved = (dict(copyreg._extension_registry), dict(copyreg._inverted_registry),  # type: ignore[attr-defined]
             dict(copyreg._extension_cache))  # type: ignore[attr-defined]
    try:
        while stream.tell() < len(data) and result.loads < max_loads:
            pos = stream.tell()
            proto = data[pos + 1] if data[pos] == 0x80 and pos + 1 < len(data) else 0
            result.loads += 1
            try:
                _Recorder(stream, result, proto).load()
            except Exception as exc:  # noqa: BLE001 - how the real loader stops is the data here
                result.errors.append(f"{type(exc).__name__}: {exc}")
                break
    finally:
        for live, old in zip((copyreg._extension_registry, copyreg._inverted_registry,  # type: ignore[attr-defined]
                              copyreg._extension_cache), saved, strict=True):  # type: ignore[attr-defined]
            live.clear()
            live.update(old)
    return result
