"""Tensors of a PyTorch checkpoint, described from its pickle without loading it.

torch.save writes every tensor as a call to one of torch's rebuild helpers:
`_rebuild_tensor_v2(PersistentRef(('storage', StorageType, key, location, numel)), storage_offset,
size, stride, requires_grad, hooks)`, `_rebuild_tensor_v3(...)` with an explicit dtype for the
newer dtypes (fp8, uint16/32/64) over an UntypedStorage, wrapped in `_rebuild_parameter` for
`nn.Parameter` and in `torch._tensor._rebuild_from_type_v2` for tensors with Python attributes.
The symbolic machine records exactly those calls; here they become `TensorSpec`s. Each container
(zip, legacy, tar) says where a storage's bytes are through a `lookup` function. The containers
(`torch_zip`, `torch_legacy`) build on this module; the converter's `read_checkpoint` is in
`convert/torch_input.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from airlock.core import dtypes
from airlock.core.pickle.values import Call, Global, PDict, PersistentRef, PList, PTuple
from airlock.core.tensor_spec import StorageRef, TensorSpec, constructor_pairs

# Storage class → (dtype code, bytes per element, torch dtype name). Codes without a SafeTensors
# equivalent (C128, C32, the quantized ones) are still described for the tree.
STORAGE_DTYPES: dict[str, tuple[str, int, str]] = {
    name: (d.code, d.itemsize or 1, d.torch or "") for name, d in dtypes.TORCH_STORAGES.items()}
# torch dtype name (as `torch.<name>` globals in _rebuild_tensor_v3) → (code, bytes per element).
DTYPES: dict[str, tuple[str, int]] = {name: (d.code, d.itemsize or 1) for name, d in dtypes.BY_TORCH.items()}
# Bytes per element of every code above (spec.DTYPE_SIZES knows only the SafeTensors ones).
ITEMSIZES = {code: size for code, size in DTYPES.values()}

TENSOR_REBUILDERS = ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
                     "torch._utils._rebuild_tensor")
PARAMETER_REBUILDERS = ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
                        "torch.nn.parameter.Parameter")
_MODULE_STATE_KEYS = ("_parameters", "_buffers", "_modules")

# lookup(key, dtype_code, itemsize, numel, location) → the storage's StorageRef, or why there is none.
Lookup = Callable[[str, str, int, int, str], "StorageRef | str"]


class TensorInfo:
    """One tensor found in the pickle, for the tree and for the converter."""

    __slots__ = ("call", "location", "malformed", "parameter", "path", "problem", "requires_grad", "spec",
                 "torch_dtype")

    def __init__(self, path: str, call: Any, spec: TensorSpec | None = None, problem: str | None = None,
                 malformed: bool = False, torch_dtype: str = "", location: str = "", parameter: bool = False,
                 requires_grad: bool = False) -> None:
        self.path = path
        self.call = call  # the rebuild Call, or the PersistentRef of a legacy tar tensor
        self.spec = spec
        self.problem = problem  # why it could not be described (the loader may fail too)
        self.malformed = malformed  # the problem is one torch.load would fail on
        self.torch_dtype = torch_dtype
        self.location = location
        self.parameter = parameter
        self.requires_grad = requires_grad


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):  # py2 checkpoints read with encoding="bytes"
        return value.decode("latin-1")
    return None


def _int_tuple(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, Call) and value.target is not None and value.target.dotted == "torch.Size":
        value = value.args.items[0] if isinstance(value.args, PTuple) and value.args.items else None
    if isinstance(value, (PTuple, PList)) and all(type(v) is int for v in value.items):
        return tuple(value.items)
    return None


def describe(call: Call, lookup: Lookup, path: str = "") -> TensorInfo | None:
    """A TensorInfo if `call` rebuilds a tensor (or a parameter around one), else None."""
    target = call.target.dotted if call.target is not None else ""
    args = call.args.items if isinstance(call.args, PTuple) else []
    if target in PARAMETER_REBUILDERS:
        return _describe_parameter(call, args, lookup, path)
    if target == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3:
        return _describe_from_type(call, args, lookup, path)
    if target not in TENSOR_REBUILDERS:
        return None
    info = TensorInfo(path, call)
    try:
        info.spec = _tensor_spec(target, args, lookup, info)
    except _NotDescribed as why:
        info.problem, info.malformed = why.problem, why.malformed
    return info


def _describe_parameter(call: Call, args: list[Any], lookup: Lookup, path: str) -> TensorInfo | None:
    """`nn.Parameter` (or `_rebuild_parameter`) around a tensor: the tensor, marked as a parameter."""
    inner = args[0] if args else None
    info = describe(inner, lookup, path) if isinstance(inner, Call) else None
    if info is not None:
        info.call, info.parameter = call, True
        info.requires_grad = bool(args[1]) if len(args) > 1 and isinstance(args[1], bool) else True
    return info


def _describe_from_type(call: Call, args: list[Any], lookup: Lookup, path: str) -> TensorInfo | None:
    """`_rebuild_from_type_v2(func, type, args, state)`: a tensor subclass; the tensor is func(*args)."""
    inner = Call(args[0], args[2], "reduce", call.offset)
    inner.target = args[0] if isinstance(args[0], Global) else None
    info = describe(inner, lookup, path)
    if info is not None:
        info.call = call
    return info


class _NotDescribed(Exception):
    """Why a rebuild call gives no TensorSpec; `malformed` when torch.load would fail on it too."""

    def __init__(self, problem: str, malformed: bool = True) -> None:
        super().__init__(problem)
        self.problem, self.malformed = problem, malformed


def _tensor_spec(target: str, args: list[Any], lookup: Lookup, info: TensorInfo) -> TensorSpec:
    """The spec of `_rebuild_tensor*(storage, offset, size, stride, ...)`; fills info's dtype,
    location and requires_grad on the way. Raises _NotDescribed."""
    if len(args) < 4 or not isinstance(args[0], PersistentRef):
        raise _NotDescribed(f"{target} without a storage, offset, size and stride")
    storage_class, key, numel, view = _storage_id(args[0], info)
    storage_code, storage_itemsize, info.torch_dtype = STORAGE_DTYPES[storage_class]
    code, itemsize = storage_code, storage_itemsize
    if target.endswith("_v3"):
        info.torch_dtype = _explicit_dtype(args)
        code, itemsize = DTYPES[info.torch_dtype]
    info.requires_grad = len(args) > 4 and args[4] is True
    offset, size, stride = _geometry(args)
    ref = lookup(key, storage_code, storage_itemsize, numel, info.location)
    if isinstance(ref, str):
        raise _NotDescribed(ref)
    if isinstance(view, PTuple) and len(view.items) == 3 and type(view.items[1]) is int:
        offset += view.items[1] * storage_itemsize // itemsize  # legacy view into a root storage
    spec = TensorSpec(code, size, stride, offset, ref)
    _check_extent(spec, itemsize)
    return spec


def _storage_id(ref: PersistentRef, info: TensorInfo) -> tuple[str, str, int, Any]:
    """(storage class, key, numel, legacy view) of ('storage', type, key, location, numel[, view])."""
    pid = ref.pid.items if isinstance(ref.pid, PTuple) else []
    if len(pid) < 5 or _text(pid[0]) != "storage" or not isinstance(pid[1], Global):
        raise _NotDescribed("persistent id is not a ('storage', type, key, location, numel)")
    storage_class, key, location, numel = pid[1].name.rsplit(".", 1)[-1], _text(pid[2]), _text(pid[3]), pid[4]
    info.location = location or ""
    if storage_class not in STORAGE_DTYPES or key is None or type(numel) is not int or numel < 0:
        raise _NotDescribed(f"unknown storage {pid[1].dotted} or bad key/size")
    return storage_class, key, numel, pid[5] if len(pid) > 5 else None


def _explicit_dtype(args: list[Any]) -> str:
    """The torch dtype name `_rebuild_tensor_v3` is given (its 7th argument)."""
    dtype = args[6] if len(args) > 6 else None
    name = dtype.name if isinstance(dtype, Global) and dtype.module == "torch" else None
    if name is None:  # torch.load fails on anything but a torch.<dtype> here
        raise _NotDescribed(f"dtype {repr(dtype)[:80]} is not a torch dtype")
    if name not in DTYPES:  # perhaps a dtype newer than Airlock: not described, not malformed
        raise _NotDescribed(f"dtype torch.{name} is not known to Airlock", malformed=False)
    return name


def _geometry(args: list[Any]) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Storage offset, size and stride, checked to be non-negative integers of matching rank."""
    offset, size, stride = args[1], _int_tuple(args[2]), _int_tuple(args[3])
    if type(offset) is not int or size is None or stride is None or len(size) != len(stride):
        raise _NotDescribed("storage offset, size or stride is not a list of integers")
    if offset < 0 or any(d < 0 for d in size) or any(s < 0 for s in stride):
        raise _NotDescribed(f"negative offset, size or stride ({offset}, {size}, {stride})")
    return offset, size, stride


def _check_extent(spec: TensorSpec, itemsize: int) -> None:
    """The last element the view reaches must lie inside its storage."""
    if not spec.numel:
        return
    last = spec.storage_offset + sum((d - 1) * s for d, s in zip(spec.shape, spec.strides, strict=True))
    if (last + 1) * itemsize > spec.storage.nbytes:
        raise _NotDescribed(f"tensor reaches byte {(last + 1) * itemsize:,} of a storage of "
                            f"{spec.storage.nbytes:,} bytes")


def _key_text(key: Any) -> str:
    text = _text(key)
    if text is not None:
        return text
    return repr(key) if isinstance(key, (int, float, bool, type(None))) else f"<{type(key).__name__}>"


PersistentTensor = Callable[[PersistentRef, str], "TensorInfo | None"]


def walk(value: Any, lookup: Lookup, *, replace: bool = False,
         persistent: PersistentTensor | None = None) -> Iterator[TensorInfo]:
    """Every tensor under `value`, with its key path. With `replace`, containers get TensorSpecs
    in place of the tensor calls (dicts stay symbolic: PDict, or Call with map_items).
    `persistent` describes tensors that are persistent ids themselves (legacy tar checkpoints)."""
    seen_containers: set[int] = set()
    described: dict[int, TensorInfo | None] = {}

    def visit(node: Any, path: str, depth: int) -> Iterator[tuple[TensorInfo, Any]]:
        if depth > 200:
            return
        if isinstance(node, PersistentRef) and persistent is not None:
            if id(node) not in described:
                described[id(node)] = persistent(node, path)
            found = described[id(node)]
            if found is not None:
                yield (found if found.path == path else _copy(found, path)), found.spec
            return
        if not isinstance(node, (Call, PDict, PList, PTuple)):
            return
        if isinstance(node, Call):
            if id(node) not in described:
                described[id(node)] = describe(node, lookup, path)
            info = described[id(node)]
            if info is not None:
                yield (info if info.path == path else _copy(info, path)), info.spec
                return
        if id(node) in seen_containers:
            return
        seen_containers.add(id(node))
        for holder, index, key, child in _children(node):
            child_path = path if key is None else (f"{path}.{key}" if path else key)
            for info, spec in visit(child, child_path, depth + 1):
                if replace and spec is not None and child is info.call:
                    _set(holder, index, spec)
                yield info, spec

    for info, _ in visit(value, "", 0):
        yield info


def _copy(info: TensorInfo, path: str) -> TensorInfo:
    return TensorInfo(path, info.call, info.spec, info.problem, info.malformed, info.torch_dtype,
                      info.location, info.parameter, info.requires_grad)


def _children(node: Any) -> Iterator[tuple[list[Any], int, str | None, Any]]:
    """(list holding the child, index, path key, child) for every child of a symbolic value."""
    if isinstance(node, PDict):
        for i, (k, v) in enumerate(node.items):
            yield node.items, i, _key_text(k), v
    elif isinstance(node, (PList, PTuple)):
        for i, v in enumerate(node.items):
            yield node.items, i, str(i), v
    elif isinstance(node, Call):
        for pair in constructor_pairs(node):  # OrderedDict([[key, tensor], ...]), Python 2's way
            yield pair.items, 1, _key_text(pair.items[0]), pair.items[1]
        for i, (k, v) in enumerate(node.map_items):
            yield node.map_items, i, _key_text(k), v
        for i, v in enumerate(node.list_items):
            yield node.list_items, i, str(i), v
        state = node.state
        if isinstance(state, PDict):
            # An nn.Module's state: name its tensors like a state_dict ("layer.weight").
            for i, (k, v) in enumerate(state.items):
                key = _key_text(k)
                yield state.items, i, (None if key in _MODULE_STATE_KEYS else key), v
        elif state is not None:
            yield [state], 0, None, state


def _set(holder: list[Any], index: int, spec: TensorSpec) -> None:
    item = holder[index]
    holder[index] = (item[0], spec) if isinstance(item, tuple) else spec


def persistent_refs(value: Any, limit: int = 10_000_000) -> Iterator[PersistentRef]:
    """Every persistent id reachable from `value`, wherever it sits (call arguments included)."""
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack and len(seen) < limit:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, PersistentRef):
            yield node
        elif isinstance(node, PDict):
            stack.extend(v for kv in node.items for v in kv)
        elif isinstance(node, (PList, PTuple)):
            stack.extend(node.items)
        elif isinstance(node, Call):
            stack.extend((node.func, node.args, node.kwargs, node.state))
            stack.extend(v for kv in node.map_items for v in kv)
            stack.extend(node.list_items)
