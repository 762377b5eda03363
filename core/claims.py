"""What a file's name claims, and what happens when the content disagrees (the fail-closed policy).

Content decides the format; the name only adds checks, never lowers a verdict:

- a name that claims a model format unambiguously (`.safetensors .gguf .pt .pth .ckpt .pkl .pickle .onnx
  .keras .nemo .npy .npz .joblib`) on content that is not that format is `high` ("named X, but not valid
  X: why"): the loader picked by the name acts on malformed bytes. The why comes from the claimed
  format's own parser run on the bytes, with the offset where it gave up;
- any known extension on content of another format is also a `low` mismatch (for ambiguous names —
  a `.bin` is raw OpenVINO or GGML weights too, a `.h5` plain HDF5 data too — that is all: they do not
  raise the verdict);
- known-inert content (text, images, tokenizer data) under an ambiguous name is not a mismatch at all.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from airlock.core import formats
from airlock.core.errors import Cancelled, FormatError, LimitExceeded
from airlock.core.findings import ExtensionMismatch, NamedButInvalid, Severity
from airlock.core.formats.contract import FormatModule
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import FILE, Node

if TYPE_CHECKING:  # the context calls back into the dispatcher, which calls us: a type only here
    from airlock.core.context import ScanContext

_PICKLES = ("pickle", "torch_zip", "torch_legacy", "torchscript", "joblib", "compressed")


class Claim:
    __slots__ = ("accepts", "parser", "title")

    def __init__(self, title: str, accepts: tuple[str, ...], parser: str | None) -> None:
        self.title = title        # the format the name claims, in words
        self.accepts = accepts    # content formats that honour the claim (what its loaders read)
        # The format module that explains why other content is not valid; None for formats parsed in
        # the isolated child (ONNX, Keras HDF5): a process per misnamed file is too dear for a reason.
        self.parser = parser


# The loaders behind each name: torch.load reads zips, legacy and TorchScript files and plain pickles
# (it unpickles a plain pickle before refusing its magic number); pickle.load / joblib.load read what
# torch.save, joblib.dump and compressed wrappers write (fastai's export.pkl is a torch zip);
# numpy.load opens any zip as an .npz.
CLAIMS = {
    ".safetensors": Claim("SafeTensors", ("safetensors",), "safetensors"),
    ".gguf": Claim("GGUF", ("gguf",), "gguf"),
    ".pt": Claim("PyTorch checkpoint", _PICKLES[:4], "pickle"),
    ".pth": Claim("PyTorch checkpoint", _PICKLES[:4], "pickle"),
    ".ckpt": Claim("PyTorch checkpoint", _PICKLES[:4], "pickle"),
    ".pkl": Claim("pickle", _PICKLES, "pickle"),
    ".pickle": Claim("pickle", _PICKLES, "pickle"),
    ".joblib": Claim("joblib", ("joblib", "pickle", "compressed"), "joblib"),
    ".onnx": Claim("ONNX", ("onnx",), None),
    ".keras": Claim("Keras", ("keras",), None),
    ".nemo": Claim("NeMo", ("nemo",), "nemo"),
    ".npy": Claim("NumPy .npy", ("npy",), "npy"),
    ".npz": Claim("NumPy .npz", ("npz", "zip"), "npz"),
    ".pt2": Claim("torch.export archive", ("pt2",), "pt2"),
    ".tflite": Claim("TFLite", ("tflite",), "tflite"),
    ".pte": Claim("ExecuTorch program", ("executorch",), "executorch"),
    ".ort": Claim("onnxruntime ORT", ("ort",), "ort"),
    ".skops": Claim("skops", ("skops",), "skops"),
    ".cbm": Claim("CatBoost", ("catboost",), "catboost"),
}
INERT_FORMATS = frozenset({"text", "image", "sentencepiece", "git-lfs-pointer"})
_MULTI_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".pt.tar")


def extensions(name: str) -> list[str]:
    """The name's extensions that may mean something, longest first: `m.tar.gz` → [.tar.gz, .gz]."""
    lower = os.path.basename(name).lower()
    ext = os.path.splitext(lower)[1]
    out = [s for s in _MULTI_SUFFIXES if lower.endswith(s) and lower != s]
    if ext not in ("", "."):
        out.append(ext)
    return out


def check_name(name: str, fmt: str, source: Source, ctx: ScanContext, node: Node, *, mismatch: bool) -> None:
    """Findings for what `name` claims about content parsed as `fmt`. `mismatch`: also report the
    low-severity disagreement of a non-claiming extension (done for the scanned file itself)."""
    exts = extensions(name)
    if not exts:
        return
    claim = CLAIMS.get(exts[-1])
    if claim is not None and fmt not in claim.accepts:
        why, offset = why_not(claim, fmt, source, ctx, node)
        ctx.report(NamedButInvalid, f"named {exts[-1]}, but not valid {claim.title}: {why}", node=node,
                   offset=offset)
    if not mismatch or fmt in ("unknown", "empty") or fmt in INERT_FORMATS:
        return
    table = formats.known_extensions()
    # Said as the name's claim when it makes one: .pth is "PyTorch checkpoint", not the first format
    # module that lists it (TorchScript), which made a truncated checkpoint read "(torchscript)".
    owner = next((CLAIMS[e].title if e in CLAIMS else table[e] for e in exts if e in table), None)
    if owner is None:
        return
    try:
        module = formats.by_name(fmt)
        # ALSO_NAMED: common names a format is saved under that do not make a file a model by name
        # (an XGBoost model.json, a LightGBM model.txt, OpenVINO's model.xml).
        agreed = (*module.EXTENSIONS, *getattr(module, "ALSO_NAMED", ()))
    except KeyError:
        agreed = ()
    if not any(e in agreed for e in exts):
        ctx.report(ExtensionMismatch, f"the name says {exts[0]} ({owner}) but the content is {fmt}",
                   node=node, offset=0)


def why_not(claim: Claim, fmt: str, source: Source, ctx: ScanContext, node: Node) -> tuple[str, int | None]:
    """Why the bytes are not the claimed format, in the claimed parser's own words, and where."""
    content = _content_words(fmt, node)
    if source.size == 0:
        return "the file is empty (0 bytes)", 0
    if fmt in INERT_FORMATS or claim.parser is None:
        return f"the content is {content}", 0
    problem = _forced_parse(formats.by_name(claim.parser), source, ctx)
    if problem is None:
        return f"the content is {content}", 0
    message, offset = problem
    return f"{message} (the content reads as {content})", offset


def _content_words(fmt: str, node: Node) -> str:
    if fmt == "unknown":
        return "unrecognised binary data"
    return safe_text(str(node.attrs.get("content") or fmt), 160)


def _forced_parse(module: FormatModule, source: Source, ctx: ScanContext) -> tuple[str, int | None] | None:
    """Run the claimed format's parser on bytes its sniffer did not claim, in a scratch context (its
    findings are not the file's: the content was already judged as what it is). Returns the first
    problem it met, or None when it found none."""
    scratch = ctx.scratch()  # the same clock, cancel button and decompression budget as the scan it explains
    scratch.current = Node(FILE, source.name, offset=0, length=source.size, member=source.member)
    try:
        module.parse(source, scratch)
    except Cancelled:
        raise
    except FormatError as exc:
        return safe_text(exc.message, 300), exc.offset
    except LimitExceeded as exc:
        return safe_text(exc.message, 300), exc.offset
    except Exception as exc:  # noqa: BLE001 - the parser's failure is the answer we want
        return f"{type(exc).__name__}: {safe_text(str(exc), 200)}", None
    worst = max(scratch.findings, key=lambda f: f.severity, default=None)
    if worst is None or worst.severity < Severity.HIGH:
        return None
    return safe_text(worst.message, 300), worst.offset
