"""Rule ids of the code checks (PY...). Severities as issue 22 sets them: deserialisation that runs
code and remote code `high`; floating or missing revisions, plain HTTP, TLS checks off, unknown
`**kwargs` `medium`. The checks themselves live in airlock.core.code.checks."""

from __future__ import annotations

from airlock.core.findings import Rule, Severity


class CodeNotParsed(Rule):
    id = "PY001"
    severity = Severity.MEDIUM
    title = "Python code could not be read"
    help = (
        "Airlock reads code with Python's own parser and never runs it. This file (or notebook cell) "
        "did not parse or decode, so its calls were not checked."
    )
    incomplete = True


class DeserializerImport(Rule):
    id = "PY100"
    severity = Severity.INFO
    title = "Imports a module that runs code while deserialising"
    help = "pickle, dill, shelve, marshal, jsonpickle and torch.package run code named by the data they load."


class TorchLoad(Rule):
    id = "PY101"
    severity = Severity.HIGH
    title = "torch.load without weights_only=True"
    help = (
        "torch.load unpickles the file and runs any callable it names unless weights_only=True. "
        "torch 1.13-2.5 default to weights_only=False; 2.6 and later default to True, except when "
        "pickle_module is passed or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set. "
        "torch.hub.load_state_dict_from_url defaults to weights_only=False."
    )


class PickleLoad(Rule):
    id = "PY102"
    severity = Severity.HIGH
    title = "Unpickling (pickle, dill, cloudpickle, jsonpickle, msgpack-numpy)"
    help = "Unpickling runs any callable the data names. Only data this code produced itself is safe."


class JoblibLoad(Rule):
    id = "PY103"
    severity = Severity.HIGH
    title = "joblib.load"
    help = "joblib.load unpickles the file: loading a model this way runs any code it names."


class NumpyAllowPickle(Rule):
    id = "PY104"
    severity = Severity.HIGH
    title = "numpy.load with allow_pickle=True"
    help = "With allow_pickle=True, numpy.load unpickles object arrays in .npy/.npz files."


class PandasReadPickle(Rule):
    id = "PY105"
    severity = Severity.HIGH
    title = "pandas.read_pickle"
    help = "pandas.read_pickle unpickles the file."


class TorchHubLoad(Rule):
    id = "PY106"
    severity = Severity.HIGH
    title = "torch.hub.load runs the repository's hubconf.py"
    help = "torch.hub.load imports hubconf.py (and what it imports) from a GitHub repository or folder."


class KerasUnsafe(Rule):
    id = "PY107"
    severity = Severity.HIGH
    title = "Keras unsafe deserialisation enabled"
    help = "safe_mode=False or keras.config.enable_unsafe_deserialization() lets Lambda layers run code."


class YamlUnsafeLoad(Rule):
    id = "PY108"
    severity = Severity.HIGH
    title = "YAML loaded without a safe loader"
    help = (
        "yaml.load with Loader/UnsafeLoader/FullLoader (or none, before PyYAML 5.1), yaml.unsafe_load and "
        "yaml.full_load build Python objects named by the document."
    )


class ShelveMarshal(Rule):
    id = "PY109"
    severity = Severity.HIGH
    title = "shelve or marshal"
    help = "shelve unpickles its values; marshal loads code objects."


class TorchPackage(Rule):
    id = "PY110"
    severity = Severity.HIGH
    title = "torch.package importer"
    help = "A torch.package archive carries Python code and pickles that its PackageImporter runs."


class MlflowPickledModel(Rule):
    id = "PY111"
    severity = Severity.HIGH
    title = "MLflow model flavour stored as a pickle"
    help = (
        "mlflow.pyfunc/sklearn/pytorch/statsmodels/pmdarima/fastai load_model unpickle (cloudpickle, "
        "pickle or torch.load) the model's files."
    )


class TorchDistributedObjects(Rule):
    id = "PY112"
    severity = Severity.HIGH
    title = "torch.distributed object collectives unpickle"
    help = (
        "broadcast_object_list, all_gather_object, gather_object, scatter_object_list and recv_object_list "
        "unpickle what other ranks send."
    )


class KerasLegacyLoad(Rule):
    id = "PY113"
    severity = Severity.MEDIUM
    title = "Keras load_model of a file that may be a legacy HDF5/SavedModel"
    help = (
        "safe_mode protects only the .keras format: tf.keras 2.x and Keras < 3.11.3 ignore it for "
        ".h5/.hdf5 files (CVE-2025-9905), whose Lambda layers then run code."
    )


class TensorflowSavedModel(Rule):
    id = "PY114"
    severity = Severity.MEDIUM
    title = "TensorFlow SavedModel loaded from a path Airlock cannot see"
    help = "A SavedModel's graph runs its own ops (file and system ops included) and may need custom op " \
        "libraries."


class TrustRemoteCode(Rule):
    id = "PY201"
    severity = Severity.HIGH
    title = "trust_remote_code=True"
    help = "The library imports Python files from the model or dataset repository and runs them."


class ExecOfLoadedText(Rule):
    id = "PY202"
    severity = Severity.HIGH
    title = "exec/eval/compile of text read from a file or the network"
    help = "The code runs text that came from a file or a download."


class ImportFromDownload(Rule):
    id = "PY203"
    severity = Severity.HIGH
    title = "Imports or runs a module from a downloaded folder"
    help = "importlib/runpy/sys.path make Python import code that was just downloaded."


class NativeLibraryLoad(Rule):
    id = "PY204"
    severity = Severity.MEDIUM
    title = "Native library loaded from a path the code computes"
    help = (
        "torch.ops/torch.classes.load_library, tf.load_op_library, numpy.ctypeslib.load_library and "
        "ctypes load native code; from a downloaded path this is remote code (high)."
    )


class FloatingRevision(Rule):
    id = "PY301"
    severity = Severity.MEDIUM
    title = "Hub download without a pinned commit"
    help = (
        "from_pretrained, hf_hub_download, snapshot_download, pipeline(model=...), load_dataset, "
        "SentenceTransformer and timm.create_model(pretrained=True) fetch whatever a branch or tag "
        "points to today unless revision= is a 40-hex commit."
    )


class SafetensorsDisabled(Rule):
    id = "PY302"
    severity = Severity.MEDIUM
    title = "use_safetensors=False"
    help = "The loader is told to prefer pickle-based weights over SafeTensors."


class PlainHttp(Rule):
    id = "PY303"
    severity = Severity.MEDIUM
    title = "Model fetched over plain http://"
    help = "Anyone on the network path can replace a model fetched over http://."


class TlsVerifyOff(Rule):
    id = "PY304"
    severity = Severity.MEDIUM
    title = "TLS certificate checks turned off for a download"
    help = "verify=False, an unverified SSL context or an empty CA bundle lets anyone on the network path " \
        "serve the file."


class UnverifiedDownloadLoaded(Rule):
    id = "PY305"
    severity = Severity.MEDIUM
    title = "Downloaded file loaded without an integrity check"
    help = "A file fetched with urlretrieve/requests/urlopen is then loaded by a loader that runs code."


class CouldNotTell(Rule):
    id = "PY306"
    severity = Severity.MEDIUM
    title = "Could not tell whether a risky option is passed"
    help = (
        "A decisive argument (weights_only, allow_pickle, Loader, safe_mode, trust_remote_code, "
        "revision...) comes from **kwargs or a value Airlock cannot see."
    )
