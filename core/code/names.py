"""Dotted names as the checks know them, and what calls yield (file text, downloads, own bytes).

Libraries re-export the same function under several paths (`tensorflow.keras.models.load_model`,
`torch.serialization.load`, `cPickle.loads`); `canonical` folds each onto one spelling, longest
prefix first, so a check names a function once.
"""

from __future__ import annotations

import builtins

from airlock.core.code.values import DOWNLOADED, FROM_FILE, FROM_NET, PRODUCED

_ST = "sentence_transformers"
_ALIASES = {
    "cPickle": "pickle",
    "_pickle": "pickle",
    "pickle5": "pickle",
    "six.moves.cPickle": "pickle",
    "dill._dill": "dill",
    "cloudpickle.cloudpickle": "cloudpickle",
    "sklearn.externals.joblib": "joblib",
    "joblib.numpy_pickle": "joblib",
    "torch.serialization.load": "torch.load",
    "torch.utils.model_zoo.load_url": "torch.hub.load_state_dict_from_url",
    "torch.package.package_importer": "torch.package",
    "tensorflow.keras": "keras",
    "tensorflow.python.keras": "keras",
    "tf_keras": "keras",
    "keras.src.saving.saving_api": "keras.saving",
    "keras.src.saving": "keras.saving",
    "keras.src.models": "keras.models",
    "keras.api.models": "keras.models",
    "keras.api.saving": "keras.saving",
    "keras.src.saving.serialization_lib": "keras.config",
    "keras.api.config": "keras.config",
    "keras.src.config": "keras.config",
    "tensorflow.compat.v2": "tensorflow",
    "tensorflow.compat.v1": "tensorflow",
    "pandas.io.pickle": "pandas",
    "numpy.lib.npyio": "numpy",
    "numpy.lib.format.read_array": "numpy.load",
    "datasets.load": "datasets",
    "transformers.pipelines": "transformers",
    "huggingface_hub.file_download": "huggingface_hub",
    "huggingface_hub._snapshot_download": "huggingface_hub",
    "huggingface_hub.hf_api.HfApi": "huggingface_hub.HfApi",
    f"{_ST}.SentenceTransformer.SentenceTransformer": f"{_ST}.SentenceTransformer",
    f"{_ST}.cross_encoder.CrossEncoder.CrossEncoder": f"{_ST}.CrossEncoder",
    "sentence_transformers.cross_encoder": "sentence_transformers",
    "timm.models": "timm",
    "timm.models._factory": "timm",
    "urllib2": "urllib.request",
    "urllib.urlretrieve": "urllib.request.urlretrieve",
    "urllib.urlopen": "urllib.request.urlopen",
    "six.moves.urllib.request": "urllib.request",
    "requests.api": "requests",
    "mlflow.pyfunc.load_pyfunc": "mlflow.pyfunc.load_model",
    "yaml.cyaml": "yaml",
    "ruamel.yaml": "ruamel_yaml",
    "torch.distributed.distributed_c10d": "torch.distributed",
    "importlib._bootstrap_external.SourceFileLoader": "importlib.machinery.SourceFileLoader",
}
_MAX_PARTS = max(name.count(".") for name in _ALIASES) + 1


def canonical(name: str) -> str:
    parts = name.split(".")
    for n in range(min(len(parts), _MAX_PARTS), 0, -1):
        head = ".".join(parts[:n])
        alias = _ALIASES.get(head)
        if alias is not None:
            return ".".join([alias, *parts[n:]])
    return name


BUILTINS = frozenset(dir(builtins))

# What a call returns, by the callee's canonical name: bits of values.py's flags.
RESULT_FLAGS = {
    "builtins.open": FROM_FILE,
    "io.open": FROM_FILE,
    "codecs.open": FROM_FILE,
    "pathlib.Path.read_text": FROM_FILE,
    "pathlib.Path.read_bytes": FROM_FILE,
    "requests.get": FROM_NET,
    "requests.post": FROM_NET,
    "requests.request": FROM_NET,
    "requests.Session": FROM_NET,
    "httpx.get": FROM_NET,
    "httpx.Client": FROM_NET,
    "httpx.stream": FROM_NET,
    "urllib.request.urlopen": FROM_NET,
    "urllib3.PoolManager": FROM_NET,
    "urllib3.request": FROM_NET,
    "huggingface_hub.hf_hub_download": DOWNLOADED,
    "huggingface_hub.snapshot_download": DOWNLOADED,
    "huggingface_hub.cached_download": DOWNLOADED,
    "huggingface_hub.try_to_load_from_cache": DOWNLOADED,
    "transformers.utils.cached_file": DOWNLOADED,
    "transformers.utils.hub.cached_file": DOWNLOADED,
    "urllib.request.urlretrieve": DOWNLOADED,
    "wget.download": DOWNLOADED,
    "gdown.download": DOWNLOADED,
    "keras.utils.get_file": DOWNLOADED,
    "torch.hub.download_url_to_file": DOWNLOADED,
    "pickle.dumps": PRODUCED,
    "dill.dumps": PRODUCED,
    "cloudpickle.dumps": PRODUCED,
    "marshal.dumps": PRODUCED,
    "jsonpickle.encode": PRODUCED,
}
# Calls that download a file to disk or fetch bytes: the first half of "download, then load".
DOWNLOADS = frozenset({
    "urllib.request.urlretrieve", "urllib.request.urlopen", "requests.get", "requests.request", "httpx.get",
    "wget.download", "gdown.download", "torch.hub.download_url_to_file", "keras.utils.get_file",
    "urllib3.request",
})
# Functions that build a path or text from their arguments: flags flow through them.
PASS_THROUGH = frozenset({
    "os.path.join", "os.path.abspath", "os.path.realpath", "os.path.dirname", "os.fspath",
    "os.path.expanduser", "pathlib.Path", "pathlib.PurePath", "builtins.str", "builtins.bytes",
    "builtins.bytearray", "base64.b64decode", "base64.decodebytes", "zlib.decompress", "gzip.decompress",
    "bz2.decompress", "lzma.decompress", "codecs.decode", "textwrap.dedent", "io.BytesIO", "io.StringIO",
})
# Libraries that load models from the Hugging Face Hub (for `**kwargs` that may carry a flag).
HUB_LOADERS = frozenset({
    "transformers.pipeline", "datasets.load_dataset", "huggingface_hub.hf_hub_download",
    "huggingface_hub.snapshot_download", "sentence_transformers.SentenceTransformer",
    "sentence_transformers.CrossEncoder", "timm.create_model",
})


def flags_of_call(name: str | None) -> int:
    if name is None:
        return 0
    flags = RESULT_FLAGS.get(name)
    if flags is not None:
        return flags
    last = name.rsplit(".", 1)[-1]
    if last in ("read_text", "read_bytes") and name.startswith("pathlib."):
        return FROM_FILE
    return 0
