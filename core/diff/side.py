"""What one file holds, as a diff sees it: read from the scan tree `airlock scan` builds.

A `Side` lists the file's tensors (by full name, with where their bytes are, or why they cannot be
read), its metadata and chat templates, the globals and callables its pickles reference, and its
ONNX operators. Lazy groups of tensors are expanded (a diff needs every name); lazy lists of
opcodes or array elements are not (a million opcodes say nothing a diff reports).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from airlock.core.tree import (
    ARRAY,
    CALL,
    ELEMENT,
    GLOBAL,
    INITIALIZER,
    METADATA,
    OPCODE,
    OPERATOR,
    TEMPLATE,
    TENSOR,
)

if TYPE_CHECKING:
    from airlock.core.api import Report
    from airlock.core.tensors import TensorData
    from airlock.core.tree import Node

# Lazy children of these kinds are never expanded: they are many and a diff does not compare them.
_SKIPPED_LAZY = frozenset({OPCODE, ELEMENT})


class Tensor:
    """One tensor or ONNX initializer: where its bytes are (`data`), or why they cannot be read."""

    __slots__ = ("data", "dtype", "name", "node", "shape", "size", "span", "why")

    def __init__(self, name: str, node: Node) -> None:
        from airlock.core.tensors import describe

        self.name = name
        self.node = node
        try:
            described: TensorData | str = describe(node)
        except (ValueError, OverflowError, TypeError, IndexError) as exc:  # a hostile node's attributes
            described = f"its bytes cannot be located: {type(exc).__name__}: {exc}"
        self.data: TensorData | None = described if not isinstance(described, str) else None
        self.why: str | None = described if isinstance(described, str) else None
        dtype = node.attrs.get("st_dtype") or node.attrs.get("dtype")
        self.dtype = self.data.dtype.code if self.data is not None else str(dtype)
        if self.data is not None:
            self.shape = tuple(self.data.shape)
        else:
            shape = node.attrs.get("shape")
            self.shape = tuple(shape) if isinstance(shape, tuple | list) else ()
        size = node.attrs.get("size")
        self.size = size if isinstance(size, int) else (node.length or 0)
        # The bytes to hash: the tensor's own span, else (when the format reader located only the
        # whole record, e.g. an ONNX TensorProto in a member-less file) the node's span.
        if self.data is not None:
            self.span: tuple[int, int] | None = (self.data.offset, self.data.nbytes)
        elif node.member is None and isinstance(node.offset, int) and isinstance(node.length, int):
            self.span = (node.offset, node.length)
        else:
            self.span = None


class Side:
    """One file of a diff: its scan report (with the tree kept open) and what the diff compares."""

    def __init__(self, report: Report | None) -> None:
        """`report` None: the missing side of a file only one folder has (nothing in it)."""
        self.report = report
        self.path = report.path if report is not None else None
        self.format = report.format if report is not None else None
        self.severity = report.severity.label if report is not None else None
        self.findings: list[dict[str, Any]] = report.findings if report is not None else []
        self.real_path = report.real_path if report is not None else None
        self.tensors: dict[str, Tensor] = {}
        self.duplicates: list[str] = []  # tensor names met twice (only the first is compared)
        self.metadata: dict[str, str] = {}
        self.templates: dict[str, str] = {}
        self.globals: dict[str, str] = {}  # name → the allowlist's verdict ("safe", "unknown", …)
        self.calls: Counter[str] = Counter()  # callable → number of calls
        self.operators: Counter[str] = Counter()  # "domain.op_type" → count
        self._arrays: list[tuple[str, int, int, str]] = []  # GGUF arrays: key, span, description
        result = report.result if report is not None else None
        if result is not None:
            self._read(result.root)
            self._array_digests()
            if self.format == "safetensors":
                self._full_metadata()

    @property
    def read(self) -> Any:
        """`read(offset, n)` over the file (a `Source.read`)."""
        result = self.report.result if self.report is not None else None
        return result.source.read if result is not None and result.source is not None else None

    @property
    def size(self) -> int:
        result = self.report.result if self.report is not None else None
        return int(result.size or 0) if result is not None else 0

    def _read(self, root: Node) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            self._take(node)
            if node.is_lazy and node.child_count and node.child_at(0).kind in _SKIPPED_LAZY:
                continue
            stack.extend(reversed(node.children()))

    def _take(self, node: Node) -> None:
        kind, attrs = node.kind, node.attrs
        if kind in (TENSOR, INITIALIZER):
            name = attrs.get("name")
            name = name if isinstance(name, str) else node.label
            if name in self.tensors:
                self.duplicates.append(name)
            else:
                self.tensors[name] = Tensor(name, node)
        elif kind == TEMPLATE:
            text = attrs.get("text")
            if isinstance(text, str):
                self.templates[_key(node)] = text
        elif kind == METADATA:
            self.metadata[_key(node)] = str(attrs.get("value", node.label))
        elif kind == GLOBAL:
            self.globals.setdefault(node.label, str(attrs.get("policy", "")))
        elif kind == CALL:
            callable_name = attrs.get("callable")
            if isinstance(callable_name, str):
                self.calls[callable_name] += 1
        elif kind == ARRAY and isinstance(attrs.get("key"), str) and node.member is None \
                and isinstance(node.offset, int) and isinstance(node.length, int):
            count = attrs.get("count")
            desc = f"[{attrs.get('element_type', '?')} × {count:,}]" if isinstance(count, int) else "[array]"
            self._arrays.append((attrs["key"], node.offset, node.length, desc))
        elif kind == OPERATOR:
            op = attrs.get("op_type")
            if isinstance(op, str):
                self.operators[f"{attrs.get('domain', 'ai.onnx')}.{op}"] += 1

    def _array_digests(self) -> None:
        """A GGUF array (a vocabulary, merges, scores) compared by the hash of its bytes: its values
        are too many to list, and a changed token must still show."""
        from airlock.core.diff.values import HASH_NAME, hash_span

        for key, offset, length, desc in self._arrays:
            digest = hash_span(self.real_path, offset, length) if self.real_path is not None else None
            self.metadata.setdefault(key, f"{desc} {HASH_NAME} {digest or 'unreadable'}")

    def _full_metadata(self) -> None:
        """SafeTensors metadata values in full: the tree keeps a preview of each (400 characters), and
        a change past it must still show. The header is read again (size-capped as the scan caps it)."""
        import json

        read, limit = self.read, 256 * 1024 * 1024
        if read is None:
            return
        head = read(0, 8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        if not 0 < n <= limit:
            return
        try:
            meta = json.loads(read(8, n)).get("__metadata__")
        except (ValueError, AttributeError):
            return  # the scan reported why; the previews stand
        if isinstance(meta, dict):
            for key, value in meta.items():
                if key in self.metadata and isinstance(value, str):
                    self.metadata[key] = value

    def close(self) -> None:
        if self.report is not None:
            self.report.close()


def _key(node: Node) -> str:
    key = node.attrs.get("key")
    if isinstance(key, str):
        return key
    return node.label.split(" = ", 1)[0].split(" (", 1)[0]


def open_side(path: str, *, limits: Any = None) -> Side:
    """Scan `path` (keeping its tree open) and read what a diff compares. Never raises on bad input:
    a file Airlock cannot read is a side with findings and nothing else."""
    from airlock.core.api import scan_file

    return Side(scan_file(path, keep_tree=True, limits=limits))
