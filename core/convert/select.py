"""Which dict of a checkpoint becomes the SafeTensors file, and how its keys are named.

A checkpoint is often more than a state dict: `{"state_dict": …, "optimizer_states": …,
"epoch": 3}`. The default is the dict holding the most tensors as direct values (the model's
weights outnumber any single optimizer-state dict); `key` picks another. Keys are relative to
the chosen dict, nested dicts are joined with ".". Non-tensor entries are listed as skipped and
kept as metadata strings only when they are plain scalars or strings.

A whole pickled `torch.nn.Module` (`torch.save(model)`, or `{"model": model, "epoch": 3}`) reads
as the dict `model.state_dict()` would return, built from the instance's pickled `__dict__`:
`_parameters`, the persistent `_buffers`, and `_modules` recursively, joined with ".". Nothing of
the module's class is imported.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from airlock.core.convert.model import ConvertError, OutTensor, Plan
from airlock.core.pickle.values import Call, PList, PSet, PTuple, preview
from airlock.core.tensor_spec import DTYPE_SIZES, TensorSpec, as_mapping
from airlock.core.text import safe_text

MAX_WALK = 1_000_000  # values visited while looking for the weights dict

PLAIN = (str, int, float, bool)
QTENSOR = "torch._utils._rebuild_qtensor"  # torch.quantize_per_tensor / per_channel results


def _mapping(value: Any) -> list[tuple[Any, Any]] | None:
    """Key/value pairs of a dict-like value, or the state dict of a pickled module."""
    pairs = as_mapping(value)
    if pairs is None and isinstance(value, Call):
        pairs = module_state_dict(value)
    return pairs


def module_state_dict(module: Call) -> list[tuple[Any, Any]] | None:
    """What `module.state_dict()` holds, read from a pickled module's `__dict__`; None for
    anything that is not a module (no `_parameters` and `_modules` in its state)."""
    if not _is_module(module):
        return None
    pairs: list[tuple[Any, Any]] = []
    stack: list[tuple[Call, str]] = [(module, "")]
    seen: set[int] = set()
    while stack:
        current, prefix = stack.pop()
        if id(current) in seen:
            continue  # a submodule shared by two parents is stored once by state_dict()
        seen.add(id(current))
        if len(seen) > MAX_WALK:
            raise ConvertError(f"the module has more than {MAX_WALK:,} submodules")
        state = dict(_named(as_mapping(current.state) or []))
        skip = _names_in_set(state.get("_non_persistent_buffers_set"))
        for table in ("_parameters", "_buffers"):
            for name, value in _named(as_mapping(state.get(table)) or []):
                if value is not None and not (table == "_buffers" and name in skip):
                    pairs.append((prefix + name, value))
        children = [(name, child) for name, child in _named(as_mapping(state.get("_modules")) or [])
                    if _is_module(child)]
        stack.extend((child, f"{prefix}{name}.") for name, child in reversed(children))
    return pairs


def _is_module(value: Any) -> bool:
    if not isinstance(value, Call):
        return False
    keys = {key for key, _ in as_mapping(value.state) or []}
    return "_parameters" in keys and "_modules" in keys


def _named(pairs: list[tuple[Any, Any]]) -> list[tuple[str, Any]]:
    return [(key, value) for key, value in pairs if isinstance(key, str)]


def _names_in_set(value: Any) -> set[str]:
    """The strings in a pickled `set([...])`, as `_non_persistent_buffers_set` is stored."""
    if isinstance(value, PSet):
        return {item for item in value.items if isinstance(item, str)}
    if isinstance(value, Call) and isinstance(value.args, PTuple) and value.args.items:
        first = value.args.items[0]
        if isinstance(first, PList | PTuple):
            return {item for item in first.items if isinstance(item, str)}
    return set()


def _children(value: Any) -> list[tuple[Any, Any]] | None:
    """(key, child) pairs of a dict-like or list-like symbolic value, or a module's state dict."""
    pairs = _mapping(value)
    if pairs is not None:
        return pairs
    if isinstance(value, PList | PTuple):
        return list(enumerate(value.items))
    return None


def _key_text(key: Any) -> str | None:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    return None


def find_weights(root: Any) -> tuple[Any, str]:
    """The dict with the most direct tensor values (breadth first: the shallowest wins ties).

    Dicts reached only through string keys come first: per-parameter optimizer state sits under
    integer parameter ids (`state.0.exp_avg`), and a one-layer model's two weights must still
    win over its optimizer's three tensors per parameter.
    """
    best: tuple[bool, int, Any, str] = (False, 0, None, "")
    queue: deque[tuple[Any, str, bool]] = deque([(root, "", True)])
    seen: set[int] = set()
    visited = 0
    while queue:
        value, path, named = queue.popleft()
        if id(value) in seen:
            continue  # the memo lets a pickle reference one value from many places
        seen.add(id(value))
        pairs = _children(value)
        if pairs is None:
            continue
        if _mapping(value) is not None:
            count = sum(1 for _, v in pairs if isinstance(v, TensorSpec))
            if count and (named, count) > best[:2]:
                best = (named, count, value, path)
        for key, child in pairs:
            visited += 1
            if visited > MAX_WALK:
                raise ConvertError(f"the checkpoint has more than {MAX_WALK:,} values; pick the weights "
                                   "with --key")
            text = _key_text(key)
            if text is not None and _children(child) is not None:
                queue.append((child, f"{path}.{text}" if path else text,
                              named and isinstance(key, str) and _mapping(value) is not None))
    if best[2] is None:
        if isinstance(root, TensorSpec):
            return root, ""
        raise ConvertError("no tensors found in the checkpoint")
    return best[2], best[3]


def resolve_key(root: Any, key: str) -> Any:
    """Walk a dotted path; a key that itself contains dots is matched whole first."""
    value = root
    rest = key
    walked = ""
    while rest:
        pairs = _children(value)
        if pairs is None:
            raise ConvertError(f"--key {key}: {walked or 'the top level'} is not a dict or list")
        names = {(_key_text(k) or ""): v for k, v in pairs}
        for cut in _cuts(rest):
            head = rest[:cut]
            if head in names:
                value = names[head]
                walked = f"{walked}.{head}" if walked else head
                rest = rest[cut + 1:]
                break
        else:
            available = ", ".join(sorted(n for n in names if n)[:20])
            raise ConvertError(f"--key {key}: no entry {rest!r} under {walked or 'the top level'} "
                               f"(entries: {safe_text(available, 300)})")
    if _mapping(value) is None and not isinstance(value, TensorSpec):
        raise ConvertError(f"--key {key}: that entry is {safe_text(preview(value, 60))}, "
                           "not a dict of tensors")
    return value


def _cuts(rest: str) -> Iterator[int]:
    """Prefix lengths to try, longest first: 'a.b.c' -> 5, 3, 1."""
    yield len(rest)
    for i in range(len(rest) - 1, 0, -1):
        if rest[i] == ".":
            yield i


def plan_from_value(root: Any, plan: Plan, *, key: str | None, path: str, prefix: str = "") -> None:
    """Add the tensors, metadata and skipped entries of a checkpoint's root value to `plan`."""
    if key is not None:
        chosen, where = resolve_key(root, key), key
    else:
        chosen, where = find_weights(root)
    plan.selected = where
    if isinstance(chosen, TensorSpec):
        plan.tensors.append(OutTensor(prefix + (where or "tensor"), chosen.dtype, chosen.shape, chosen,
                                      path=path))
        return
    _skip_outside(root, chosen, where, plan)
    _flatten(chosen, prefix, plan, path, set())


def _skip_outside(root: Any, chosen: Any, where: str, plan: Plan) -> None:
    """List the top-level entries that the chosen dict leaves out."""
    if chosen is root:
        return
    top = where.split(".", 1)[0]
    for key, value in _children(root) or []:
        name = _key_text(key)
        if name is None or name == top:
            continue
        plan.skipped.append((safe_text(name), f"not under the selected dict {safe_text(where)!r}: "
                             f"{_describe(value)}"))


def _flatten(value: Any, prefix: str, plan: Plan, path: str, active: set[int]) -> None:
    if id(value) in active:
        plan.skipped.append((safe_text(prefix.rstrip(".")), "a dict containing itself"))
        return
    active.add(id(value))
    for key, child in _mapping(value) or []:
        text = _key_text(key)
        if text is None:
            plan.skipped.append((safe_text(prefix + preview(key, 40)), "key is not a string or integer"))
            continue
        name = prefix + text
        if isinstance(child, TensorSpec) and child.dtype not in DTYPE_SIZES:
            plan.skipped.append((safe_text(name), f"tensor of dtype {child.dtype}: SafeTensors has no "
                                 "such dtype"))
        elif isinstance(child, TensorSpec):
            plan.tensors.append(OutTensor(name, child.dtype, child.shape, child, path=path))
        elif _mapping(child) is not None:
            _flatten(child, name + ".", plan, path, active)
        elif isinstance(child, PLAIN) or child is None:
            plan.metadata[name] = repr(child) if isinstance(child, float) else str(child)
            plan.skipped.append((safe_text(name), "not a tensor; kept in __metadata__"))
        else:
            plan.skipped.append((safe_text(name), _describe(child)))
    active.discard(id(value))


def _describe(value: Any) -> str:
    if isinstance(value, TensorSpec):
        return f"tensor {value.dtype} {list(value.shape)}"
    pairs = _children(value)
    if pairs is not None:
        tensors = sum(1 for _ in _iter_tensors(value, 10_000))
        kind = "dict" if _mapping(value) is not None else "list"
        return f"{kind} of {len(pairs)} entries" + (f" ({tensors} tensors inside)" if tensors else "")
    if isinstance(value, Call) and value.target is not None and value.target.dotted == QTENSOR:
        return "a quantized torch tensor: SafeTensors has no quantized dtypes"
    return f"not a tensor: {safe_text(preview(value, 60), 120)}"


def _iter_tensors(value: Any, budget: int) -> Iterator[TensorSpec]:
    stack = [value]
    seen: set[int] = set()
    while stack and budget > 0:
        budget -= 1
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, TensorSpec):
            yield item
        else:
            stack.extend(v for _, v in _children(item) or [])
