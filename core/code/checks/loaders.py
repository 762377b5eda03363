"""Loaders that run code from what they load: YAML, Keras, TensorFlow SavedModel, torch.hub,
torch.package, MLflow, torch.distributed's object collectives."""

from __future__ import annotations

from collections.abc import Iterator

from airlock.core.code.callsite import FORWARDED, GIVEN, SPREAD, CallSite, strings, truths
from airlock.core.code.checks.registry import Issue, callee, check, issue, named
from airlock.core.code.rules import (
    CouldNotTell,
    KerasLegacyLoad,
    KerasUnsafe,
    MlflowPickledModel,
    TensorflowSavedModel,
    TorchDistributedObjects,
    TorchHubLoad,
    TorchPackage,
    YamlUnsafeLoad,
)
from airlock.core.code.values import Const, Local, Ref, Value


@check(TorchHubLoad, names=("torch.hub.load",))
def torch_hub_load(site: CallSite) -> Iterator[Issue]:
    """torch.hub.load: imports the repository's hubconf.py (GitHub repo or local folder) and runs it."""
    repo = site.arg("repo_or_dir", 0)
    found, what = strings(repo.value) if repo.how == GIVEN else (None, "")
    shown = f" {what}" if found else ""
    pin = ""
    if found and not any(":" in r and _is_commit(r.rsplit(":", 1)[1]) for r in found):
        pin = "; the repository is not pinned to a commit (owner/repo:<40-hex>), so that code can change"
    yield issue(
        site,
        TorchHubLoad,
        f"{callee(site, 'torch.hub.load')}{shown} imports the repository's hubconf.py and runs it{pin}",
    )


def _is_commit(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text)


KERAS_LOADERS = ("keras.models.load_model", "keras.saving.load_model")


@check(KerasUnsafe, names=KERAS_LOADERS)
def keras_load_model(site: CallSite) -> Iterator[Issue]:
    """keras load_model: safe_mode=False is high; without it, a path that may be a legacy .h5 file
    (whose Lambda layers safe_mode does not cover everywhere) is medium."""
    fn = callee(site, site.name or "load_model")
    safe = site.arg("safe_mode", 3)
    if safe.how == GIVEN:
        known, what = truths(safe.value)
        if known is not None and False in known:
            yield issue(
                site,
                KerasUnsafe,
                f"{fn} with safe_mode={what}: Lambda layers and arbitrary "
                "functions named by the model's config run",
            )
            return
        if known is None and not isinstance(safe.value, Const):
            yield issue(site, CouldNotTell, f"{fn}: safe_mode is {what}; could not tell whether it is False")
            return
    elif safe.how == SPREAD:
        yield issue(site, CouldNotTell, f"{fn}: safe_mode may come from **kwargs Airlock cannot see")
        return
    path = site.arg("filepath", 0)
    found, what = strings(path.value) if path.how == GIVEN else (None, "")
    if found and all(p.lower().endswith(".keras") for p in found):
        return
    kind = (
        "a legacy HDF5 file"
        if found and any(p.lower().endswith((".h5", ".hdf5")) for p in found)
        else f"{what or 'a path'}, which may be a legacy .h5/.hdf5 file"
    )
    yield issue(
        site,
        KerasLegacyLoad,
        f"{fn} of {kind}: safe_mode protects only the .keras format "
        "(tf.keras 2.x and Keras < 3.11.3 run an HDF5 model's Lambda layers, CVE-2025-9905)",
    )


@check(KerasUnsafe, names=("keras.config.enable_unsafe_deserialization",))
def keras_enable_unsafe(site: CallSite) -> Iterator[Issue]:
    """keras.config.enable_unsafe_deserialization(): every later load runs Lambda layers."""
    yield named(site, KerasUnsafe, "enable_unsafe_deserialization",
                "turns Keras' safe_mode off "
                "for every model loaded afterwards: Lambda layers run")


SAFE_YAML_LOADERS = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"})
UNSAFE_YAML_LOADERS = frozenset(
    {"Loader", "UnsafeLoader", "FullLoader", "CLoader", "CUnsafeLoader", "CFullLoader"}
)


@check(
    YamlUnsafeLoad,
    names=(
        "yaml.load",
        "yaml.load_all",
        "yaml.unsafe_load",
        "yaml.unsafe_load_all",
        "yaml.full_load",
        "yaml.full_load_all",
    ),
)
def yaml_load(site: CallSite) -> Iterator[Issue]:
    """yaml.load(_all) without a safe Loader, yaml.unsafe_load(_all), yaml.full_load(_all)."""
    fn = callee(site, site.name or "yaml.load")
    name = site.name or ""
    if name.startswith(("yaml.unsafe_load", "yaml.full_load")):
        yield issue(
            site,
            YamlUnsafeLoad,
            f"{fn} builds the Python objects the document names (!!python/object/apply runs callables)",
        )
        return
    loader = site.arg("Loader", 1)
    if loader.how == GIVEN:
        verdict = _yaml_loader(loader.value)
        if verdict is True:
            return
        if verdict is False:
            shown = loader.value.name if isinstance(loader.value, Ref) else "an unsafe loader"
            yield issue(
                site,
                YamlUnsafeLoad,
                f"{fn} with Loader={shown}: the document's python/object tags "
                "build objects and call callables",
            )
            return
        yield issue(site, CouldNotTell, f"{fn}: could not tell whether its Loader is a safe one")
    elif loader.how in (SPREAD, FORWARDED):
        yield issue(
            site, CouldNotTell, f"{fn}: Loader may come from **kwargs; could not tell whether it is safe"
        )
    else:
        yield issue(
            site,
            YamlUnsafeLoad,
            f"{fn} without Loader=: PyYAML < 5.1 then uses its unsafe Loader "
            "(5.1-5.4 FullLoader; 6.0 refuses the call); use yaml.safe_load",
        )


def _yaml_loader(value: Value | None, depth: int = 0) -> bool | None:
    """True: a safe loader; False: an unsafe one; None: cannot tell."""
    if isinstance(value, Ref):
        last = value.name.rsplit(".", 1)[-1]
        if last in SAFE_YAML_LOADERS:
            return True
        if last in UNSAFE_YAML_LOADERS:
            return False
        return None
    if isinstance(value, Local) and depth < 8:
        verdicts = [_yaml_loader(base, depth + 1) for base in value.bases]
        if verdicts and all(v is True for v in verdicts):
            return True
        if any(v is False for v in verdicts):
            return False
    return None


@check(TorchPackage, names=("torch.package.PackageImporter",))
def torch_package(site: CallSite) -> Iterator[Issue]:
    """torch.package.PackageImporter: the archive's own modules and pickles run when loaded."""
    yield named(site, TorchPackage, "torch.package.PackageImporter",
                "imports the Python code "
                "packaged in the archive and unpickles its objects")


MLFLOW_PICKLED = (
    "mlflow.pyfunc.load_model",
    "mlflow.sklearn.load_model",
    "mlflow.pytorch.load_model",
    "mlflow.statsmodels.load_model",
    "mlflow.pmdarima.load_model",
    "mlflow.fastai.load_model",
)


@check(MlflowPickledModel, names=MLFLOW_PICKLED)
def mlflow_load(site: CallSite) -> Iterator[Issue]:
    """MLflow flavours stored as pickles (cloudpickle for pyfunc python models, pickle/joblib, torch.load)."""
    yield named(site, MlflowPickledModel, site.name or "mlflow",
                "loads a model flavour that is "
                "stored as a pickle (cloudpickle, pickle or torch.load): any callable it names runs")


TORCH_OBJECT_COLLECTIVES = tuple(
    f"torch.distributed.{n}"
    for n in (
        "broadcast_object_list",
        "all_gather_object",
        "gather_object",
        "scatter_object_list",
        "recv_object_list",
    )
)


@check(TorchDistributedObjects, names=TORCH_OBJECT_COLLECTIVES)
def torch_distributed_objects(site: CallSite) -> Iterator[Issue]:
    """torch.distributed object collectives: the objects other ranks send are unpickled."""
    yield named(site, TorchDistributedObjects, site.name or "torch.distributed",
                "unpickles the "
                "objects other ranks send: a compromised peer runs code here")


@check(TensorflowSavedModel, names=("tensorflow.saved_model.load", "tensorflow.saved_model.loader.load"))
def tf_saved_model(site: CallSite) -> Iterator[Issue]:
    """tf.saved_model.load of a path the code computes (a literal path is the application's own model)."""
    arg = site.arg("export_dir", 0)
    if arg.how == GIVEN and isinstance(arg.value, Const):
        return
    yield named(site, TensorflowSavedModel, "tf.saved_model.load",
                "of a path the code computes: "
                "the SavedModel's graph runs its own ops (file and system ops included)")
