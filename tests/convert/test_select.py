"""Which dict becomes the SafeTensors file, and how keys and metadata are named."""

import pytest

from airlock.core.convert.model import ConvertError, Plan
from airlock.core.convert.select import find_weights, plan_from_value
from airlock.core.pickle.values import Call, Global, PDict, PList
from airlock.core.tensor_spec import StorageRef, TensorSpec


def spec(n=4, dtype="F32", key="0"):
    return TensorSpec(dtype, (n,), (1,), 0, StorageRef(key, dtype, n * 4, 0))


def ordered(items):
    call = Call(Global("collections", "OrderedDict", 0), None, "reduce", 0)
    call.target = call.func
    call.map_items = items
    return call


def plan_of(root, key=None):
    plan = Plan("test")
    plan_from_value(root, plan, key=key, path="x")
    return plan


def test_model_state_wins_over_optimizer_state():
    model = ordered([(f"layer{i}.weight", spec()) for i in range(3)])
    opt = PDict([("state", PDict([(0, PDict([("exp_avg", spec()), ("exp_avg_sq", spec())]))])),
                 ("param_groups", PList([PDict([("lr", 0.1)])]))])
    root = PDict([("optimizer_state", opt), ("model_state", model), ("epoch", 7)])
    value, where = find_weights(root)
    assert value is model and where == "model_state"
    plan = plan_of(root)
    assert [t.name for t in plan.tensors] == ["layer0.weight", "layer1.weight", "layer2.weight"]
    skipped = dict(plan.skipped)
    assert "not under the selected dict" in skipped["optimizer_state"]
    assert "2 tensors inside" in skipped["optimizer_state"]
    assert "epoch" in skipped
    assert plan.metadata == {}  # entries outside the chosen dict are listed, not kept


def test_nested_dicts_are_joined_with_dots_and_scalars_kept_as_metadata():
    root = PDict([("a", spec()), ("b", spec()), ("sub", PDict([("c", spec()), ("deeper", PDict([("d", spec())]))])),
                  ("lr", 0.5), ("name", "resnet"), ("flag", True), ("n", 3), ("blob", b"\x00"),
                  ("obj", Call(Global("argparse", "Namespace", 0), None, "reduce", 0))])
    plan = plan_of(root)
    assert [t.name for t in plan.tensors] == ["a", "b", "sub.c", "sub.deeper.d"]
    assert plan.metadata == {"lr": "0.5", "name": "resnet", "flag": "True", "n": "3"}
    skipped = dict(plan.skipped)
    assert skipped["lr"] == "not a tensor; kept in __metadata__"
    assert skipped["blob"].startswith("not a tensor")
    assert "argparse.Namespace" in skipped["obj"]


def test_key_selects_another_dict_and_accepts_dotted_names_and_list_indexes():
    inner = PDict([("exp_avg", spec()), ("exp_avg_sq", spec())])
    root = PDict([("model", PDict([("w", spec()), ("v", spec()), ("u", spec())])),
                  ("opt", PList([PDict([("state", PDict([(0, inner)]))])])),
                  ("odd.name", PDict([("x", spec())]))])
    assert [t.name for t in plan_of(root, key="opt.0.state.0").tensors] == ["exp_avg", "exp_avg_sq"]
    assert [t.name for t in plan_of(root, key="opt.0.state").tensors] == ["0.exp_avg", "0.exp_avg_sq"]
    assert [t.name for t in plan_of(root, key="odd.name").tensors] == ["x"]
    with pytest.raises(ConvertError, match="no entry 'nope'"):
        plan_of(root, key="model.nope")
    with pytest.raises(ConvertError, match="not a dict"):
        plan_of(root, key="opt.0.state.0.exp_avg.more")


def test_unsupported_dtype_is_skipped_with_its_reason():
    root = PDict([("ok", spec()), ("c128", TensorSpec("C128", (2,), (1,), 0, StorageRef("1", "C128", 32, 0)))])
    plan = plan_of(root)
    assert [t.name for t in plan.tensors] == ["ok"]
    assert "C128" in dict(plan.skipped)["c128"]


def test_no_tensors_is_a_clear_error():
    with pytest.raises(ConvertError, match="no tensors"):
        plan_of(PDict([("a", 1)]))


def test_a_bare_tensor_becomes_one_entry():
    plan = plan_of(spec())
    assert [t.name for t in plan.tensors] == ["tensor"]


def test_self_referencing_dicts_terminate():
    loop = PDict([("w", spec())])
    loop.items.append(("self", loop))
    plan = plan_of(loop)
    assert [t.name for t in plan.tensors] == ["w"]
    assert dict(plan.skipped)["self"] == "a dict containing itself"


def test_a_one_layer_model_wins_over_its_adam_state():
    weights = PDict([("weight", spec()), ("bias", spec())])
    adam = PDict([("step", spec()), ("exp_avg", spec()), ("exp_avg_sq", spec())])
    root = PDict([("optimizer_states", PList([PDict([("state", PDict([(0, adam), (1, adam)]))])])),
                  ("state_dict", weights)])
    assert find_weights(root) == (weights, "state_dict")
    # A bare optimizer state dict still converts (its biggest per-parameter dict).
    assert find_weights(PDict([("state", PDict([(0, adam)]))])) == (adam, "state.0")
