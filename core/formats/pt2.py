"""torch.export archives (`.pt2`, torch.export.save / torch._inductor.aoti_compile_and_package).

A zip with `<root>/archive_format` ("pt2"), the exported program as JSON (`models/<name>.json`), its
weights and constants as raw tensor bytes described by `data/weights/<name>_weights_config.json` and
`data/constants/<name>_constants_config.json`, sample inputs saved with torch.save, and, for AOTInductor
packages, compiled native code under `data/aotinductor/`.

What a loader runs (torch/export/pt2_archive/_package.py and torch/_export/serde/serialize.py):
- a weight or constant whose config says `use_pickle` goes through `torch.load(weights_only=False)`, an
  `opaque_obj_*` constant through `pickle.loads`, a `custom_obj_*` one through torch's TorchBind
  unpickler: those members are read here as pickles, whatever their content looks like;
- every graph node's `target` is resolved by `deserialize_operator`: `torch.…`, `_operator.…` and
  `math.…` are *attribute walks* from those modules (so `torch.os.system` reaches `os.system`), `#…`
  asks a registered extension, and the callable runs when the program does. Operators under
  `torch.ops.<torch's own namespaces>` are what torch.export writes; another namespace needs a native
  library (medium), anything else is a Python callable (high, critical when it names a dangerous one);
- `aoti_load_package` loads the `.so` under `data/aotinductor/` (and compiles `.cpp` it finds without one):
  native code, high.
Every other member is scanned like a file (sample inputs are torch zips: airlock.core.formats.torch_zip).
"""

from __future__ import annotations

import json
import re
from typing import Any

from airlock.core.context import ScanContext
from airlock.core.errors import FormatError, LimitExceeded
from airlock.core.findings import LimitExceeded as LimitRule
from airlock.core.findings import Malformed, Rule, Severity
from airlock.core.formats import zip as zipf
from airlock.core.formats.contract import file_node
from airlock.core.formats.torch_rules import STANDARD_NAMESPACES
from airlock.core.source import Source
from airlock.core.text import safe_text
from airlock.core.tree import CONTENTS, GROUP, INTERNALS, OPERATOR, ROLE, TENSOR, Node
from airlock.core.zipread import ZipArchive, ZipMember, member_names, read_member

NAME = "pt2"
EXTENSIONS = (".pt2",)

_FORMAT_RECORD = re.compile(r"(?:[^/]+/)?archive_format")
_RECORDS = ("archive_version", "byteorder", ".data/version", ".data/serialization_id", "version")
MAX_OPERATOR_FINDINGS = 20  # per model: enough to show what the graph calls without burying the rest
NATIVE_MAGIC = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"MZ")
ELF = b"\x7fELF"  # outside data/aotinductor/ only ELF is flagged: raw tensor bytes may start with "MZ"
NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".o", ".cpp", ".cubin", ".pyd")
# `_operator` and `math` functions the serializer writes for symbolic shapes: pure arithmetic.
SAFE_OPERATOR = frozenset({
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs", "eq", "ne",
    "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift", "rshift", "matmul",
})
SAFE_MATH = frozenset({"ceil", "floor", "trunc", "sqrt", "exp", "log", "log2", "cos", "sin", "tan", "pow",
                       "fabs", "isnan", "isinf", "gcd", "factorial"})
SAFE_TORCH = frozenset({"sym_int", "sym_float", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sqrt",
                        "sym_sum", "sym_fresh_size", "_assert", "_check", "_check_is_size",
                        "_assert_async", "_assert_scalar", "_sym_sqrt"})
# Parts of a dotted target that reach the process, files, or code.
DANGEROUS_PARTS = frozenset({
    "os", "sys", "subprocess", "builtins", "__builtins__", "importlib", "ctypes", "shutil", "socket",
    "pickle", "marshal", "runpy", "pty", "load", "save", "from_file", "hub", "serialization", "jit",
    "package", "system", "popen", "exec", "eval", "compile", "__import__", "open", "getattr", "setattr",
    "_dynamo",
    "utils", "cpp_extension", "load_library", "_classes", "rmtree", "remove", "unlink", "spawn",
})
# torch/_export/serde/schema.py ScalarType.
DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
          8: "float64", 9: "complex32", 10: "complex64", 11: "complex128", 12: "bool", 13: "bfloat16",
          28: "uint16", 29: "float8_e4m3fn", 30: "float8_e5m2"}


class CustomOperator(Rule):
    id = "PT2001"
    severity = Severity.MEDIUM
    title = "torch.export graph calls a custom operator"
    help = ("A graph node's target is an operator namespace torch does not ship (torch.ops.<namespace>) or "
            "a '#' extension operator: loading needs a native library or handler registered outside torch.")


class PythonCallable(Rule):
    id = "PT2002"
    severity = Severity.HIGH
    title = "torch.export graph calls a Python callable that is not an operator"
    help = ("torch.export.load resolves a node's target by walking attributes from torch, _operator or "
            "math, and the program calls it when it runs: a target that is not an aten/prims operator or "
            "symbolic-shape arithmetic can reach any function those modules import.")


class DangerousCallable(Rule):
    id = "PT2003"
    severity = Severity.CRITICAL
    title = "torch.export graph calls a dangerous function"
    help = ("A node's target walks to a function that reads or writes files, loads pickles or libraries, "
            "or runs commands (torch.os.system, torch.load, torch.hub…); it runs when the program runs.")


class NativeCode(Rule):
    id = "PT2004"
    severity = Severity.HIGH
    title = "Native code in a .pt2 archive"
    help = ("An AOTInductor package carries compiled shared libraries (or C++ it compiles when none is "
            "found); aoti_load_package loads them into the process: native code no scan can prove safe.")


def sniff_source(source: Source) -> int:
    names = member_names(source)
    if not names:
        return 0
    return 96 if any(_FORMAT_RECORD.fullmatch(n) for n in names) else 0


def sniff(head: bytes, size: int) -> int:
    return sniff_source(Source.from_bytes(head, "<head>"))


def parse(source: Source, ctx: ScanContext) -> Node:
    root = file_node(source, ctx)
    archive = zipf.open_checked(source, ctx, root)
    fmt = next((m for m in archive.members if _FORMAT_RECORD.fullmatch(m.name)), None)
    prefix = fmt.name[: -len("archive_format")] if fmt is not None else ""
    root.attrs["archive"] = safe_text(prefix.rstrip("/"))
    by_name = archive.by_name()
    loaders, raw = _payloads(source, ctx, root, archive, by_name, prefix)
    records = root.child(GROUP, "archive records", offset=archive.start, member=source.member,
                         attrs={ROLE: INTERNALS})
    nodes: dict[int, Node] = {}
    models = 0
    for m in ctx.each(archive.members, "members", every=1):
        rel = m.name[len(prefix):] if m.name.startswith(prefix) else m.name
        nodes[m.index] = node = zipf.member_node(records, m, source)
        if m.is_dir:
            continue
        if rel in _RECORDS and m.size <= 64:
            node.attrs["value"] = safe_text(zipf.member_head(source, m, 64))
        elif m.name in raw:
            node.attrs["tensor bytes"] = True  # read with torch.as_strided, never unpickled
        elif rel == "archive_format":
            value = zipf.member_head(source, m, 64)
            node.attrs["value"] = safe_text(value)
            if value.strip() != b"pt2":
                ctx.report(Malformed, f"archive_format is {safe_text(value, 40)!s}, expected pt2: "
                           "torch.export.load refuses the archive", node=node, offset=m.data_offset)
        elif rel.startswith("models/") and rel.endswith(".json"):
            models += 1
            _read_model(source, ctx, root, node, m)
            _check_payload_configs(ctx, node, m, by_name, prefix, rel[len("models/"):-len(".json")])
        elif rel.startswith("data/aotinductor/") or zipf.member_head(source, m, 4) == ELF:
            _native(source, ctx, node, archive, m)
        elif m.name in loaders:
            node.attrs["loaded_by"] = loaders[m.name]
            head = zipf.member_head(source, m, 4)
            as_pickle = loaders[m.name] != "torch.load(weights_only=False)" or head[:4] != b"PK\x03\x04"
            zipf.scan_member(source, ctx, node, archive, m, force_pickle=as_pickle)
        else:
            zipf.scan_member(source, ctx, node, archive, m)
    records.label = f"archive records ({records.child_count:,})"
    root.attrs["models"] = models
    if fmt is not None and models == 0 and not any("aotinductor/" in m.name for m in archive.members):
        ctx.report(Malformed, "torch.export archive without a models/*.json program: torch.export.load "
                   "finds nothing to load", node=root, offset=archive.central_offset)
    zipf.report_issues(archive, ctx, root, nodes, source)
    return root


def _check_payload_configs(ctx: ScanContext, node: Node, m: ZipMember, by_name: dict[str, ZipMember],
                           prefix: str, model: str) -> None:
    """torch.export.load needs each program's weights and constants (a config, or the legacy .pt)."""
    for folder, kind in (("data/weights/", "weights"), ("data/constants/", "constants")):
        names = (f"{prefix}{folder}{model}_{kind}_config.json", f"{prefix}{folder}{model}.pt")
        if not any(n in by_name for n in names):
            wanted = safe_text(names[0][len(prefix):], 120)
            ctx.report(Malformed, f"program {safe_text(model, 80)} has no {wanted}: torch.export.load fails",
                       node=node, offset=m.header_offset)


def _read_json(source: Source, ctx: ScanContext, node: Node, m: ZipMember) -> Any:
    """A JSON member, bounded by the header budget; None (and a finding) when it is not JSON."""
    try:
        data = read_member(source, m, ctx.limits.max_header_bytes, ctx)
        ctx.check()
        return json.loads(data)
    except LimitExceeded as exc:
        ctx.report(LimitRule, f"member {safe_text(m.name)}: {exc.message}; not inspected", node=node,
                   offset=m.header_offset)
    except FormatError as exc:
        ctx.report(Malformed, f"member {safe_text(m.name)}: {exc.message}", node=node,
                   offset=exc.offset if exc.offset is not None else m.header_offset)
    except (ValueError, RecursionError) as exc:
        ctx.report(Malformed, f"member {safe_text(m.name)} is not valid JSON ({safe_text(str(exc), 120)}): "
                   "torch.export.load fails on it", node=node, offset=m.data_offset)
    return None


def _payloads(source: Source, ctx: ScanContext, root: Node, archive: ZipArchive,
              by_name: dict[str, ZipMember], prefix: str) -> tuple[dict[str, str], set[str]]:
    """(member name → how the loader unpickles it, members read as raw tensor bytes), from the
    weights and constants configs; the tensors they describe as a lazy group."""
    loaders: dict[str, str] = {}
    raw: set[str] = set()
    tensors: list[Node] = []
    for m in archive.members:
        rel = m.name[len(prefix):] if m.name.startswith(prefix) else m.name
        if not (rel.startswith(("data/weights/", "data/constants/")) and rel.endswith("_config.json")):
            continue
        folder = prefix + rel.rsplit("/", 1)[0] + "/"
        config = _read_json(source, ctx, root, m)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            if config is not None:
                ctx.report(Malformed, f"{safe_text(m.name)} has no 'config' object: torch.export.load fails",
                           node=root, offset=m.data_offset)
            continue
        for fqn, meta in ctx.each(list(entries.items()), "payloads"):
            if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
                continue
            path = folder + meta["path_name"]
            base = meta["path_name"]
            if base.startswith("opaque_obj_"):
                loaders[path] = "pickle.loads"
            elif base.startswith("custom_obj_"):
                loaders[path] = "torch TorchBind unpickler"
            elif meta.get("use_pickle"):
                loaders[path] = "torch.load(weights_only=False)"
            else:
                raw.add(path)
            target = by_name.get(path)
            tensors.append(_tensor_node(str(fqn), meta, target, source, loaders.get(path)))
            if target is None:
                ctx.report(Malformed, f"{safe_text(m.name)} names {safe_text(path)} for "
                           f"{safe_text(str(fqn))}, which is not in the archive: torch.export.load fails",
                           node=root, offset=m.data_offset)
    if tensors:
        group = root.child(GROUP, f"weights and constants ({len(tensors):,})", member=source.member,
                           attrs={ROLE: CONTENTS})
        root.attrs["tensors"] = len(tensors)
        group.set_lazy_children(len(tensors), lambda start, stop: tensors[start:stop])
    return loaders, raw - set(loaders)


def _tensor_node(fqn: str, meta: dict[str, Any], member: ZipMember | None, source: Source,
                 loader: str | None) -> Node:
    attrs: dict[str, object] = {"file": safe_text(meta["path_name"], 120)}
    tmeta = meta.get("tensor_meta")
    if isinstance(tmeta, dict):
        code = tmeta.get("dtype")
        attrs["dtype"] = DTYPES.get(code, f"code {code}") if isinstance(code, int) else "?"
        sizes = tmeta.get("sizes")
        if isinstance(sizes, list):
            attrs["shape"] = [s.get("as_int") if isinstance(s, dict) and isinstance(s.get("as_int"), int)
                              else "?" for s in sizes[:16]]
    if loader:
        attrs["loaded_by"] = loader
    if meta.get("is_param"):
        attrs["parameter"] = True
    offset = member.data_offset if member is not None and member.method == 0 else None
    length = member.size if offset is not None and member is not None else None
    return Node(TENSOR, safe_text(fqn, 200), offset=offset, length=length, member=source.member, attrs=attrs)


def _read_model(source: Source, ctx: ScanContext, root: Node, node: Node, m: ZipMember) -> None:
    program = _read_json(source, ctx, node, m)
    if program is None:
        return
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        ctx.report(Malformed, f"{safe_text(m.name)} has no graph_module: torch.export.load fails", node=node,
                   offset=m.data_offset)
        return
    calls = _graph_nodes(program, ctx)
    name = m.name.rsplit("/", 1)[-1][: -len(".json")]
    group = root.child(GROUP, f"program {safe_text(name, 80)}: operators ({len(calls):,})",
                       offset=m.header_offset, member=source.member, attrs={ROLE: CONTENTS})
    distinct = sorted({target for _name, target in calls})
    group.attrs["distinct operators"] = len(distinct)
    at = m.data_offset if m.method == 0 and m.data_offset is not None else m.header_offset
    raw = read_member(source, m, ctx.limits.max_header_bytes) if m.method == 0 else b""
    reported = 0
    for target in distinct:
        ctx.tick(64)
        verdict = judge_target(target)
        if verdict is None:
            continue
        rule, why = verdict
        reported += 1
        if reported > MAX_OPERATOR_FINDINGS:
            continue
        pos = raw.find(json.dumps(target).encode("utf-8")) if raw else -1
        ctx.report(rule, f"program {safe_text(name, 80)} node target {safe_text(target, 120)}: {why}",
                   node=group, offset=at + pos if pos >= 0 else at)
    if reported > MAX_OPERATOR_FINDINGS:
        ctx.report(PythonCallable, f"{reported - MAX_OPERATOR_FINDINGS:,} more node targets in program "
                   f"{safe_text(name, 80)} are not torch operators", node=group, offset=at)

    def page(start: int, stop: int) -> list[Node]:
        return [Node(OPERATOR, safe_text(node_name, 120), member=source.member,
                     attrs={"target": safe_text(target, 200)}) for node_name, target in calls[start:stop]]

    group.set_lazy_children(len(calls), page)


def _graph_nodes(program: dict[str, Any], ctx: ScanContext) -> list[tuple[str, str]]:
    """(node name, target) of every graph node, nested graphs (cond/map bodies) included; iterative,
    so a deeply nested file cannot exhaust the stack."""
    found: list[tuple[str, str]] = []
    stack: list[Any] = [program]
    while stack:
        ctx.tick(1024)
        item = stack.pop()
        if isinstance(item, dict):
            target = item.get("target")
            if isinstance(target, str) and "inputs" in item:
                found.append((str(item.get("name", "")), target))
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    found.reverse()
    return found


def judge_target(target: str) -> tuple[type[Rule], str] | None:
    """The rule a node target breaks and why, or None for an operator torch ships."""
    parts = target.split(".")
    if target.startswith("#"):
        return CustomOperator, "an extension operator: loading needs its registered handler (outside torch)"
    if parts[0] == "torch" and len(parts) >= 3 and parts[1] == "ops":
        if parts[2] in STANDARD_NAMESPACES:
            return None
        if DANGEROUS_PARTS & set(parts[2:]):
            return DangerousCallable, "an operator named after what it would do, in a namespace torch lacks"
        return CustomOperator, f"operator namespace {safe_text(parts[2], 60)} is not torch's: it needs a " \
            "native library registered outside torch"
    if parts[0] not in ("torch", "_operator", "math"):
        return None  # deserialize_operator keeps it as a string; the graph cannot call it
    dangerous = DANGEROUS_PARTS & set(parts[1:])
    if dangerous:
        return DangerousCallable, (f"an attribute walk from {parts[0]} through {sorted(dangerous)[0]}: "
                                   "it reaches a function that touches files, pickles or the process")
    safe = {"_operator": SAFE_OPERATOR, "math": SAFE_MATH, "torch": SAFE_TORCH}[parts[0]]
    if len(parts) == 2 and parts[1] in safe:
        return None
    return PythonCallable, f"not a torch operator: the loader walks attributes from {parts[0]} and calls it"


def _native(source: Source, ctx: ScanContext, node: Node, archive: ZipArchive, m: ZipMember) -> None:
    head = zipf.member_head(source, m, 4)
    if head.startswith(NATIVE_MAGIC) or m.name.endswith(NATIVE_SUFFIXES):
        what = "C++ source that aoti_load_package compiles and loads" if m.name.endswith(".cpp") else \
            "a compiled native library that aoti_load_package loads into the process"
        node.attrs["native"] = True
        ctx.report(NativeCode, f"member {safe_text(m.name)} is {what}", node=node, offset=m.header_offset)
        return
    zipf.scan_member(source, ctx, node, archive, m)  # AOTInductor metadata (JSON) and the like
