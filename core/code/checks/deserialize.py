"""Deserialisation that runs code: torch.load, the pickle family (pickle, dill, cloudpickle, jsonpickle,
msgpack-numpy), joblib, numpy, pandas, shelve and marshal. Other loaders are in loaders.py."""

from __future__ import annotations

from collections.abc import Iterator

from airlock.core.code.callsite import FORWARDED, GIVEN, SPREAD, CallSite, literal_values, truths
from airlock.core.code.checks.registry import Issue, callee, check, issue, named
from airlock.core.code.rules import (
    CouldNotTell,
    JoblibLoad,
    NumpyAllowPickle,
    PandasReadPickle,
    PickleLoad,
    ShelveMarshal,
    TorchLoad,
)
from airlock.core.code.values import PRODUCED, Ref

# Rules whose calls load a file in a way that can run code (the second half of "download, then load").
LOADER_RULES = frozenset(
    {"PY101", "PY102", "PY103", "PY104", "PY105", "PY107", "PY108", "PY109", "PY110", "PY111", "PY113"}
)

TORCH_DEFAULTS = (
    "torch 1.13-2.5 default to weights_only=False, older versions have no such option; "
    "2.6 and later default to True"
)


def _self_produced(site: CallSite, position: int, keyword: str) -> bool:
    """Bytes or a buffer this code serialised itself (pickle.dumps, an empty BytesIO it wrote)."""
    arg = site.arg(keyword, position)
    return arg.how == GIVEN and arg.value is not None and bool(arg.value.flags & PRODUCED)


@check(TorchLoad, names=("torch.load", "torch.hub.load_state_dict_from_url"))
def torch_load(site: CallSite) -> Iterator[Issue]:
    """torch.load (and torch.hub.load_state_dict_from_url) without weights_only=True: the file is
    unpickled and any callable it names runs."""
    fn = callee(site, site.name or "torch.load")
    hub = site.name == "torch.hub.load_state_dict_from_url"
    if not hub and _self_produced(site, 0, "f"):
        return
    weights_only = site.arg("weights_only", 6 if hub else None)
    given = "not given weights_only=True"
    pickle_module = None if hub else site.arg("pickle_module", 2)
    if weights_only.how == GIVEN:
        values = literal_values(weights_only.value)
        _, what = truths(weights_only.value)
        if values is None:
            yield issue(
                site,
                CouldNotTell,
                f"{fn}: weights_only is {what}; could not tell whether it is True "
                "(without it the file is unpickled and any callable it names runs)",
            )
            return
        if any(v is not None and not v for v in values):
            yield issue(
                site,
                TorchLoad,
                f"{fn} with weights_only={what}: unpickles the file, and any callable the file names runs",
            )
            return
        if all(v is not None for v in values):
            return  # weights_only=True
        # weights_only=None means "the default": judged below as if it were absent
        given = f"with weights_only={what} (torch's default)"
    elif weights_only.how in (SPREAD, FORWARDED):
        where = "the caller's **kwargs" if weights_only.how == FORWARDED else "**kwargs Airlock cannot see"
        yield issue(
            site,
            CouldNotTell,
            f"{fn}: weights_only may come from {where}; could not tell whether it is True ({TORCH_DEFAULTS})",
        )
        return
    if hub:
        yield issue(
            site,
            TorchLoad,
            f"{fn} {given} downloads the file and unpickles it "
            "(its weights_only defaults to False in every torch version): any callable it names runs",
        )
    elif pickle_module is not None and pickle_module.how == GIVEN:
        yield issue(
            site,
            TorchLoad,
            f"{fn} {given} but pickle_module=: weights_only "
            "then defaults to False in every torch version, and any callable the file names runs",
        )
    else:
        yield issue(
            site,
            TorchLoad,
            f"{fn} {given} unpickles the file, and any callable it "
            f"names runs ({TORCH_DEFAULTS}, unless TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set)",
        )


PICKLE_LOADERS = (
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "dill.load",
    "dill.loads",
    "dill.Unpickler",
    "dill.load_session",
    "dill.load_module",
    "cloudpickle.load",
    "cloudpickle.loads",
    "jsonpickle.decode",
    "jsonpickle.unpickler.decode",
    "jsonpickle.unpickler.Unpickler",
    "msgpack_numpy.unpackb",
    "msgpack_numpy.unpack",
    "msgpack_numpy.loads",
    "msgpack_numpy.load",
)
MSGPACK_LOADERS = ("msgpack.unpackb", "msgpack.unpack", "msgpack.loads", "msgpack.load")
MSGPACK_PATCHED = "<msgpack_numpy.patch>"  # bound in the module scope once msgpack_numpy.patch() ran


@check(PickleLoad, names=PICKLE_LOADERS)
def pickle_load(site: CallSite) -> Iterator[Issue]:
    """pickle/_pickle/cPickle/dill/cloudpickle load(s) and Unpickler, jsonpickle.decode and
    msgpack_numpy's unpack: silent only for bytes the same code just produced."""
    if (
        _self_produced(site, 0, "file")
        or _self_produced(site, 0, "data")
        or _self_produced(site, 0, "string")
    ):
        return
    yield named(site, PickleLoad, site.name or "pickle",
                "unpickles its input: any callable "
                "the data names runs (only bytes this code produced itself are safe)")


@check(PickleLoad, names=MSGPACK_LOADERS)
def msgpack_numpy_load(site: CallSite) -> Iterator[Issue]:
    """msgpack unpack with object_hook=msgpack_numpy.decode, or after msgpack_numpy.patch(): object
    arrays are unpickled."""
    hook = site.arg("object_hook")
    hooked = hook.how == GIVEN and isinstance(hook.value, Ref) and hook.value.name == "msgpack_numpy.decode"
    if hooked or site.scope.module.names.get(MSGPACK_PATCHED) is not None:
        why = "object_hook=msgpack_numpy.decode" if hooked else "msgpack_numpy.patch()"
        yield named(site, PickleLoad, site.name or "msgpack",
                    f"with {why}: object arrays in "
                    "the data are unpickled, and any callable they name runs")


@check(JoblibLoad, names=("joblib.load",))
def joblib_load(site: CallSite) -> Iterator[Issue]:
    """joblib.load (also through sklearn.externals.joblib): a pickle with numpy frames."""
    yield named(site, JoblibLoad, "joblib.load",
                "unpickles the file: any callable it names runs "
                "(scikit-learn models saved with joblib are pickles)")


@check(NumpyAllowPickle, names=("numpy.load",))
def numpy_load(site: CallSite) -> Iterator[Issue]:
    """numpy.load(..., allow_pickle=<anything true>): object arrays are unpickled."""
    arg = site.arg("allow_pickle", 2)
    fn = callee(site, "numpy.load")
    if arg.how == GIVEN:
        known, what = truths(arg.value)
        if known is not None and True in known:
            yield issue(
                site,
                NumpyAllowPickle,
                f"{fn} with allow_pickle={what}: object arrays in the .npy/.npz "
                "are unpickled, and any callable they name runs",
            )
    elif arg.how == SPREAD:
        yield issue(
            site,
            CouldNotTell,
            f"{fn}: allow_pickle may come from **kwargs Airlock cannot see; "
            "could not tell whether object arrays are unpickled",
        )


@check(PandasReadPickle, names=("pandas.read_pickle",))
def pandas_read_pickle(site: CallSite) -> Iterator[Issue]:
    """pandas.read_pickle."""
    yield named(site, PandasReadPickle, "pandas.read_pickle",
                "unpickles the file: any callable it names runs")


@check(
    ShelveMarshal,
    names=("shelve.open", "shelve.DbfilenameShelf", "shelve.Shelf", "marshal.load", "marshal.loads"),
)
def shelve_marshal(site: CallSite) -> Iterator[Issue]:
    """shelve (values are pickles) and marshal (code objects); marshal of bytes this code produced is fine."""
    if site.name and site.name.startswith("marshal."):
        if _self_produced(site, 0, "bytes") or _self_produced(site, 0, "file"):
            return
        yield named(site, ShelveMarshal, site.name,
                    "loads code objects and other values from the data (Bandit B302)")
        return
    yield named(site, ShelveMarshal, site.name or "shelve.open",
                "unpickles every value read "
                "from the shelf: any callable they name runs")
