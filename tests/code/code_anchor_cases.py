"""The anchor test set: positive and negative examples in the spirit of Bandit's B301/B403/B506/B614/B615
docs and Trail of Bits' semgrep rules for Python ML (pickles-in-pytorch/-numpy/-pandas/-pytorch-
distributed, pytorch-package, pickles-in-keras/-tensorflow, scikit-joblib-load, msgpack-numpy,
hf-trust-remote-code, *-load-library). The facts come from their documentation; the code is written
here.

Each case: (name, source, rules Airlock must report (non-info), truth, bandit, tob, why).
`truth` is whether the code loads something in a way that can run code or fetches a floating
revision (what issue 22 asks to catch); `bandit`/`tob` are those projects' own labels ("pos"/"neg",
None when the case is outside their rules). Where Airlock's label differs from an anchor's, `why`
says why. benchmarks/code_anchors.py runs Bandit over the same cases and counts.
"""

from __future__ import annotations

COMMIT = "0123456789abcdef0123456789abcdef01234567"

CASES: list[tuple[str, str, set[str], bool, str | None, str | None, str]] = [
    # --- pickle family (Bandit B301, ToB pickles-*) ---
    ("pickle_loads", "import pickle\ndef f(b):\n    return pickle.loads(b)\n", {"PY102"}, True, "pos", None, ""),
    ("pickle_load_file", "import pickle\nwith open(p, 'rb') as fh:\n    obj = pickle.load(fh)\n", {"PY102"}, True,
     "pos", None, ""),
    ("pickle_unpickler", "import pickle\nobj = pickle.Unpickler(fh).load()\n", {"PY102"}, True, "pos", None, ""),
    ("cpickle_alias", "import cPickle as cp\nobj = cp.loads(data)\n", {"PY102"}, True, "pos", None, ""),
    ("from_pickle_import_as", "from pickle import loads as L\nobj = L(data)\n", {"PY102"}, True, "pos", None, ""),
    ("dill_loads", "import dill\nobj = dill.loads(data)\n", {"PY102"}, True, "pos", None, ""),
    ("dill_unpickler", "import dill\nobj = dill.Unpickler(fh)\n", {"PY102"}, True, "pos", None, ""),
    ("cloudpickle_load", "import cloudpickle\nobj = cloudpickle.load(fh)\n", {"PY102"}, True, None, None,
     "cloudpickle is pickle with extras: Bandit's list does not name it"),
    ("jsonpickle_decode", "import jsonpickle\nobj = jsonpickle.decode(text)\n", {"PY102"}, True, "pos", None, ""),
    ("shelve_open", "import shelve\ndb = shelve.open(path)\n", {"PY109"}, True, "pos", None, ""),
    ("marshal_loads", "import marshal\ncode = marshal.loads(blob)\n", {"PY109"}, True, None, None, ""),
    ("pandas_read_pickle", "import pandas as pd\ndef f(file):\n    return pd.read_pickle(file)\n", {"PY105"}, True,
     "pos", "pos", ""),
    ("pandas_read_pickle_literal", "import pandas as pd\ndf = pd.read_pickle('./dummy.pkl')\n", {"PY105"}, True,
     "pos", "neg", "a literal path still unpickles whatever that file holds"),
    ("pickle_roundtrip_own_bytes", "import pickle\nclone = pickle.loads(pickle.dumps(obj))\n", set(), False, "pos",
     None, "bytes the same code just produced: nothing from outside is unpickled"),
    ("pickle_own_buffer", "import io, pickle\nbuf = io.BytesIO()\npickle.dump(obj, buf)\nbuf.seek(0)\n"
     "clone = pickle.load(buf)\n", set(), False, "pos", None, "an empty buffer this code filled itself"),
    ("pickle_dumps_only", "import pickle\nblob = pickle.dumps(obj)\n", set(), False, "neg", None, ""),
    ("pandas_to_pickle", "import pandas as pd\ndef f(df, file):\n    df.to_pickle(file)\n", set(), False, None,
     "pos", "writing a pickle runs nothing"),
    ("pickle_map_reference", "import pickle\nobjs = list(map(pickle.loads, blobs))\n", {"PY102"}, True, None, None,
     "the function is passed uncalled and called on every blob"),
    # --- imports (Bandit B403, ToB pytorch-package): info only ---
    ("import_pickle_only", "import pickle\n", set(), False, "pos", None,
     "an import loads nothing: Airlock gives an info note (PY100), never a warning"),
    ("import_torch_package", "import torch.package\n", set(), False, None, "pos",
     "an import loads nothing: info note (PY100)"),
    ("from_torch_import_package", "from torch import package\n", set(), False, None, "pos", "info note (PY100)"),
    ("import_torchx_package", "import torchx.package as tp\n", set(), False, None, "neg", ""),
    # --- torch.load (Bandit B614, ToB pickles-in-pytorch) ---
    ("torch_load_plain", "import torch\ndef f(arg):\n    return torch.load(arg)\n", {"PY101"}, True, "pos", "pos", ""),
    ("torch_load_map_location", "import torch\nm = torch.load('model_weights.pth', map_location='cpu')\n", {"PY101"},
     True, "pos", "neg", "a literal path still unpickles the file"),
    ("torch_load_in_load_state_dict", "import torch\nmodel.load_state_dict(torch.load(PATH))\n", {"PY101"}, True,
     "pos", "neg", "torch.load unpickles before load_state_dict sees anything"),
    ("torch_load_weights_only_false", "import torch\nsd = torch.load(p, weights_only=False)\n", {"PY101"}, True, "pos",
     "pos", ""),
    ("torch_load_weights_only_true", "import torch\nsd = torch.load(p, weights_only=True)\n", set(), False, "neg",
     "pos", "weights_only=True refuses every global outside torch's allowlist"),
    ("torch_load_constant_true", "import torch\nWEIGHTS_ONLY = True\nsd = torch.load(p, weights_only=WEIGHTS_ONLY)\n",
     set(), False, "neg", "pos", "the constant is True"),
    ("torch_load_constant_false", "import torch\nWEIGHTS_ONLY = False\ndef f(p):\n"
     "    return torch.load(p, weights_only=WEIGHTS_ONLY)\n", {"PY101"}, True, "pos", "pos", ""),
    ("torch_load_alias", "import torch as t\nsd = t.load(p)\n", {"PY101"}, True, "pos", "pos", ""),
    ("torch_load_from_import", "from torch import load as L\nsd = L(p)\n", {"PY101"}, True, "pos", "pos", ""),
    ("torch_serialization_load", "import torch\nsd = torch.serialization.load(p)\n", {"PY101"}, True, "pos", None, ""),
    ("torch_load_pickle_module", "import torch, dill\nsd = torch.load(p, pickle_module=dill)\n", {"PY101"}, True,
     "pos", "pos", ""),
    ("torch_load_kwargs", "import torch\ndef f(p, **kw):\n    return torch.load(p, **kw)\n", {"PY306"}, True, "pos",
     "pos", "could not tell: the caller decides weights_only"),
    ("torch_load_own_buffer", "import io, torch\nbuf = io.BytesIO()\ntorch.save(sd, buf)\nbuf.seek(0)\n"
     "sd2 = torch.load(buf)\n", set(), False, "pos", "pos", "a buffer this code just filled"),
    ("torch_save", "import torch\ndef f(model, arg):\n    torch.save(model, arg)\n", set(), False, None, "pos",
     "writing a checkpoint runs nothing"),
    ("safetensors_load_file", "from safetensors.torch import load_file\nsd = load_file(p)\n", set(), False, None,
     None, ""),
    ("hub_load_state_dict_from_url", "import torch\nsd = torch.hub.load_state_dict_from_url(url)\n", {"PY101"},
     True, None, None, "its weights_only defaults to False"),
    ("torch_hub_load", "import torch\nm = torch.hub.load('pytorch/vision', 'resnet50')\n", {"PY106"}, True, None,
     None, "runs the repository's hubconf.py"),
    ("torch_package_importer", "from torch.package import PackageImporter\nimp = PackageImporter(path)\n", {"PY110"},
     True, None, "pos", ""),
    # --- torch.distributed (ToB pickles-in-pytorch-distributed) ---
    ("dist_broadcast_object_list", "import torch.distributed as dist\ndist.broadcast_object_list(objects, src=0)\n",
     {"PY112"}, True, None, "pos", ""),
    ("dist_all_gather_object", "import torch.distributed as dist\ndist.all_gather_object(out, obj)\n", {"PY112"},
     True, None, "pos", ""),
    ("dist_gather_object", "import torch.distributed as dist\ndist.gather_object(obj, out, dst=0)\n", {"PY112"},
     True, None, "pos", ""),
    ("dist_scatter_object_list", "import torch.distributed as dist\ndist.scatter_object_list(out, objs, src=0)\n",
     {"PY112"}, True, None, "pos", ""),
    ("dist_scatter_tensors", "import torch.distributed as dist\ndist.scatter(out, tensors, src=0)\n", set(), False,
     None, "neg", ""),
    # --- numpy (ToB pickles-in-numpy) ---
    ("np_allow_pickle_true", "import numpy\ndef f(p):\n    return numpy.load(p, allow_pickle=True)\n", {"PY104"}, True,
     None, "pos", ""),
    ("np_allow_pickle_1", "import numpy as np\ndef f(p):\n    return np.load(p, allow_pickle=1)\n", {"PY104"}, True,
     None, "pos", ""),
    ("np_allow_pickle_str_false", "import numpy as np\ndef f(p):\n    return np.load(file=p, allow_pickle='False')\n",
     {"PY104"}, True, None, "pos", "a non-empty string is true"),
    ("np_allow_pickle_positional", "import numpy as np\nx = np.load(p, None, True)\n", {"PY104"}, True, None, None,
     "allow_pickle is the third positional parameter"),
    ("np_allow_pickle_false", "import numpy as np\ndef f(p):\n    return np.load(p, allow_pickle=False)\n", set(),
     False, None, "neg", ""),
    ("np_allow_pickle_none", "import numpy as np\ndef f(p):\n    return np.load(p, allow_pickle=None)\n", set(),
     False, None, "neg", ""),
    ("np_allow_pickle_empty", "import numpy as np\ndef f(p):\n    return np.load(p, allow_pickle='')\n", set(),
     False, None, "neg", ""),
    ("np_load_default", "import numpy as np\ndef f(p):\n    return np.load(p, encoding='latin1')\n", set(), False,
     None, "neg", ""),
    ("np_allow_pickle_literal_path", "import numpy\ny = numpy.load('this_is_a_file.pickle', allow_pickle=True)\n",
     {"PY104"}, True, None, "neg", "a literal path still unpickles whatever that file holds"),
    # --- joblib (ToB scikit-joblib-load) ---
    ("joblib_load_param", "import joblib\ndef f(param):\n    return joblib.load(param)\n", {"PY103"}, True, None, "pos",
     ""),
    ("joblib_load_input", "import joblib\nm = joblib.load(input())\n", {"PY103"}, True, None, "pos", ""),
    ("joblib_load_literal", "import joblib\npath = 'test.joblib'\nm = joblib.load(path)\n", {"PY103"}, True, None,
     "neg", "a literal path still unpickles that file"),
    ("from_joblib_import_load", "from joblib import load\nm = load(p)\n", {"PY103"}, True, None, "pos", ""),
    ("skops_trusted_types", "import skops.io as sio\nclf = sio.loads(data, trusted=sio.get_untrusted_types(data))\n",
     set(), False, None, "neg", ""),
    # --- msgpack-numpy (ToB) ---
    ("msgpack_numpy_hook", "import msgpack, msgpack_numpy as m\nx = msgpack.unpackb(blob, object_hook=m.decode)\n",
     {"PY102"}, True, None, "pos", ""),
    ("msgpack_plain", "import msgpack\nx = msgpack.unpackb(blob)\n", set(), False, None, "neg", ""),
    ("msgpack_after_patch", "import msgpack, msgpack_numpy as m\nm.patch()\nx = msgpack.loads(blob)\n", {"PY102"},
     True, None, "pos", ""),
    ("msgpack_pack", "import msgpack, msgpack_numpy as m\nb = msgpack.packb(x, default=m.encode)\n", set(), False,
     None, "pos", "packing runs nothing"),
    # --- YAML (Bandit B506) ---
    ("yaml_load_no_loader", "import yaml\ncfg = yaml.load(text)\n", {"PY108"}, True, "pos", None, ""),
    ("yaml_load_loader", "import yaml\ncfg = yaml.load(text, Loader=yaml.Loader)\n", {"PY108"}, True, "pos", None, ""),
    ("yaml_load_unsafe_positional", "import yaml\ncfg = yaml.load(text, yaml.UnsafeLoader)\n", {"PY108"}, True, "pos",
     None, ""),
    ("yaml_unsafe_load", "import yaml\ncfg = yaml.unsafe_load(text)\n", {"PY108"}, True, None, None,
     "Bandit only looks at yaml.load"),
    ("yaml_full_load", "import yaml\ncfg = yaml.full_load(text)\n", {"PY108"}, True, None, None, ""),
    ("yaml_safe_loader", "import yaml\ncfg = yaml.load(text, Loader=yaml.SafeLoader)\n", set(), False, "neg", None, ""),
    ("yaml_csafe_loader", "import yaml\ncfg = yaml.load(text, yaml.CSafeLoader)\n", set(), False, "neg", None, ""),
    ("yaml_base_loader", "import yaml\ncfg = yaml.load(text, Loader=yaml.BaseLoader)\n", set(), False, "pos", None,
     "BaseLoader builds only strings, lists and dicts"),
    ("yaml_own_safe_subclass", "import yaml\nclass Loader(yaml.SafeLoader):\n    pass\ncfg = yaml.load(text, Loader)\n",
     set(), False, "pos", None, "a subclass of SafeLoader"),
    ("yaml_safe_load", "import yaml\ncfg = yaml.safe_load(text)\n", set(), False, "neg", None, ""),
    # --- Keras / TensorFlow (ToB pickles-in-keras, pickles-in-tensorflow) ---
    ("keras_load_h5_variable", "from keras.models import load_model\nm = load_model(h5_file_path)\n", {"PY113"}, True,
     None, "pos", ""),
    ("keras_load_h5_literal", "from keras.models import load_model\nm = load_model('model.h5')\n", {"PY113"}, True,
     None, "neg", "legacy HDF5 Lambda layers run even with safe_mode (CVE-2025-9905)"),
    ("keras_load_keras_literal", "from keras.models import load_model\nm = load_model('model.keras')\n", set(), False,
     None, "neg", ""),
    ("keras_safe_mode_false", "import keras\nm = keras.saving.load_model('model.keras', safe_mode=False)\n", {"PY107"},
     True, None, "neg", "safe_mode=False runs Lambda layers"),
    ("keras_enable_unsafe", "import keras\nkeras.config.enable_unsafe_deserialization()\n", {"PY107"}, True, None,
     None, ""),
    ("tf_keras_load", "import tensorflow as tf\nm = tf.keras.models.load_model(path)\n", {"PY113"}, True, None, "pos",
     ""),
    ("tf_saved_model_variable", "import tensorflow as tf\nm = tf.saved_model.load(model_dir)\n", {"PY114"}, True,
     None, "pos", ""),
    ("tf_saved_model_literal", "import tensorflow as tf\nm = tf.saved_model.load('model_dir')\n", set(), False, None,
     "neg", ""),
    # --- native libraries (ToB *-load-library) ---
    ("torch_classes_load_library", "import torch\ntorch.classes.load_library(input())\n", {"PY204"}, True, None, "pos",
     ""),
    ("torch_classes_load_literal", "import torch\ntorch.classes.load_library('lib.so')\n", set(), False, None, "neg",
     ""),
    ("numpy_ctypeslib_param", "import numpy\ndef f(p):\n    return numpy.ctypeslib.load_library(p, './loader')\n",
     {"PY204"}, True, None, "pos", ""),
    ("tf_load_op_library", "import tensorflow\ndef f(p):\n    return tensorflow.load_op_library(p + '.so')\n",
     {"PY204"}, True, None, "pos", ""),
    # --- trust_remote_code (ToB hf-trust-remote-code) ---
    ("hf_trust_remote_code", f"from transformers import AutoModelForCausalLM\nm = AutoModelForCausalLM.from_pretrained("
     f"'org/model', revision='{COMMIT}', trust_remote_code=True)\n", {"PY201"}, True, None, "pos", ""),
    ("hf_pipeline_trust", f"from transformers import pipeline\np = pipeline('text-generation', model='org/model', "
     f"revision='{COMMIT}', trust_remote_code=True)\n", {"PY201"}, True, None, "pos", ""),
    ("hf_dataset_trust", f"from datasets import load_dataset\nds = load_dataset('org/ds', revision='{COMMIT}', "
     "trust_remote_code=True)\n", {"PY201"}, True, None, "pos", ""),
    ("hf_trust_false", f"from transformers import AutoModel\nm = AutoModel.from_pretrained('org/model', "
     f"revision='{COMMIT}', trust_remote_code=False)\n", set(), False, "neg", "neg", ""),
    ("hf_trust_constant", f"from transformers import AutoModel\nTRUST = True\nm = AutoModel.from_pretrained('org/m', "
     f"revision='{COMMIT}', trust_remote_code=TRUST)\n", {"PY201"}, True, None, "neg", "the constant is True"),
    ("hf_trust_in_kwargs_dict", f"from transformers import AutoModel\nkw = {{'trust_remote_code': True}}\n"
     f"m = AutoModel.from_pretrained('org/m', revision='{COMMIT}', **kw)\n", {"PY201"}, True, None, "neg",
     "the dict spread into the call says True"),
    # --- floating revisions (Bandit B615) ---
    ("hf_no_revision", "from transformers import AutoModel\nm = AutoModel.from_pretrained('org/model-name')\n",
     {"PY301"}, True, "pos", None, ""),
    ("hf_revision_main", "from transformers import AutoModel\nm = AutoModel.from_pretrained('org/model', "
     "revision='main')\n", {"PY301"}, True, "pos", None, ""),
    ("hf_revision_tag", "from transformers import AutoTokenizer\nt = AutoTokenizer.from_pretrained('org/model', "
     "revision='v3.3.0')\n", {"PY301"}, True, "pos", None, ""),
    ("hf_revision_commit", f"from transformers import AutoModel\nm = AutoModel.from_pretrained('org/model', "
     f"revision='{COMMIT}')\n", set(), False, "neg", None, ""),
    ("hf_revision_short_hex", "from transformers import AutoModel\nm = AutoModel.from_pretrained('org/model', "
     "revision='abc1234')\n", {"PY301"}, True, "neg", None, "a short hash is resolved by the Hub, not a pinned commit"),
    ("hf_revision_variable", "from transformers import AutoModel\ndef f(rev):\n"
     "    return AutoModel.from_pretrained('org/model', revision=rev)\n", set(), False, "neg", None,
     "the caller chooses the revision"),
    ("hf_local_path", "from transformers import AutoModel\nm = AutoModel.from_pretrained('./local_dir')\n", set(),
     False, "neg", None, ""),
    ("hf_hub_download_no_rev", "from huggingface_hub import hf_hub_download\np = hf_hub_download(repo_id='org/model', "
     "filename='file_name')\n", {"PY301"}, True, "pos", None, ""),
    ("hf_snapshot_pr_ref", "from huggingface_hub import snapshot_download\nd = snapshot_download(repo_id='org/model', "
     "revision='refs/pr/1')\n", {"PY301"}, True, "pos", None, ""),
    ("hf_load_dataset_no_rev", "from datasets import load_dataset\nds = load_dataset('org/dataset-name')\n", {"PY301"},
     True, "pos", None, ""),
    ("hf_load_dataset_csv", "from datasets import load_dataset\nds = load_dataset('csv', data_files='train.csv')\n",
     set(), False, "pos", None, "a packaged builder reading local files"),
    ("diffusers_no_revision", "from diffusers import DiffusionPipeline\np = DiffusionPipeline.from_pretrained("
     "'org/sd-model')\n", {"PY301"}, True, None, None, "Bandit's B615 only knows transformers' from_pretrained"),
    ("sentence_transformer_no_rev", "from sentence_transformers import SentenceTransformer\n"
     "m = SentenceTransformer('all-MiniLM-L6-v2')\n", {"PY301"}, True, None, None, ""),
    ("timm_pretrained", "import timm\nm = timm.create_model('resnet50', pretrained=True)\n", {"PY301"}, True, None,
     None, "timm fetches Hub weights with no way to pin a commit"),
    ("timm_not_pretrained", "import timm\nm = timm.create_model('resnet50')\n", set(), False, None, None, ""),
    ("pipeline_default_model", "from transformers import pipeline\np = pipeline('sentiment-analysis')\n", set(), False,
     None, None, "transformers pins the revision of a task's default model"),
    # --- sources: http, verify, safetensors, downloads ---
    ("use_safetensors_false", f"from transformers import AutoModel\nm = AutoModel.from_pretrained('org/m', "
     f"revision='{COMMIT}', use_safetensors=False)\n", {"PY302"}, True, None, None, ""),
    ("http_model_url", "import torch\nsd = torch.hub.load_state_dict_from_url('http://example.com/m.pth', "
     "weights_only=True)\n", {"PY303"}, True, None, None, ""),
    ("https_model_url", "import torch\nsd = torch.hub.load_state_dict_from_url('https://example.com/m.pth', "
     "weights_only=True)\n", set(), False, None, None, ""),
    ("http_localhost_ping", "import requests\nr = requests.get('http://localhost:8000/ping')\n", set(), False, None,
     None, ""),
    ("requests_verify_false", "import requests\nr = requests.get(url, verify=False)\n", {"PY304"}, True, None, None, ""),
    ("ca_bundle_cleared", "import os\nos.environ['CURL_CA_BUNDLE'] = ''\n", {"PY304"}, True, None, None, ""),
    ("download_then_load", "import urllib.request, torch\nurllib.request.urlretrieve(URL, 'm.pt')\n"
     "sd = torch.load('m.pt')\n", {"PY305", "PY101"}, True, None, "neg", ""),
    ("download_hash_then_load", "import urllib.request, hashlib, torch\nurllib.request.urlretrieve(URL, 'm.pt')\n"
     "check(hashlib.sha256(open('m.pt', 'rb').read()))\nsd = torch.load('m.pt', weights_only=True)\n", set(), False,
     None, None, ""),
    # --- remote code: exec of downloaded or read text ---
    ("exec_file_text", "exec(open('setup_helpers.py').read())\n", {"PY202"}, True, None, None, ""),
    ("eval_response_text", "import requests\nresp = requests.get(url)\nvalue = eval(resp.text)\n", {"PY202"}, True,
     None, None, ""),
    ("exec_literal", "exec('x = 1')\n", set(), False, None, None, ""),
    ("import_from_snapshot", f"import sys\nfrom huggingface_hub import snapshot_download\n"
     f"d = snapshot_download('org/m', revision='{COMMIT}')\nsys.path.insert(0, d)\n", {"PY203"}, True, None, None, ""),
]
