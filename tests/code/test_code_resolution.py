"""Name resolution and flow: imports, aliases, constants, parameters, branches, cells, **kwargs."""

from __future__ import annotations

import pytest

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def findings(source: str, name: str = "m.py") -> list[tuple[str, int]]:
    """(rule, line) of every finding above info."""
    result = scan_bytes(source.encode(), name)
    assert result.format == "python"
    return [(f.rule, f.node.attrs["location"]["line"]) for f in result.findings if f.severity > Severity.INFO]


def rules(source: str) -> list[str]:
    return [rule for rule, _ in findings(source)]


@pytest.mark.parametrize("source", [
    "import torch as t\nt.load(p)\n",
    "from torch import load\nload(p)\n",
    "from torch import load as L\nL(p)\n",
    "import torch\nloader = torch.load\nloader(p)\n",
    "import torch\nf = getattr(torch, 'load')\nf(p)\n",
    "t = __import__('torch')\nt.load(p)\n",
    "import importlib\nt = importlib.import_module('torch')\nt.load(p)\n",
    "from torch import *\nload(p)\n",
    "import torch.serialization\ntorch.serialization.load(p)\n",
])
def test_every_spelling_of_torch_load_resolves(source: str) -> None:
    assert rules(source) == ["PY101"]


def test_a_local_function_shadows_the_imported_name() -> None:
    assert rules("from pickle import loads\ndef loads(b):\n    return b\nloads(x)\n") == []
    assert rules("import torch\nclass M:\n    def load(self, p):\n        return p\nM().load(p)\n") == []


def test_constants_are_read_where_the_call_is() -> None:
    assert rules("import torch\nWO = False\ntorch.load(p, weights_only=WO)\n") == ["PY101"]
    assert rules("import torch\nWO = True\ntorch.load(p, weights_only=WO)\n") == []
    # rebound before the call: the last value counts
    assert rules("import torch\nWO = False\nWO = True\ntorch.load(p, weights_only=WO)\n") == []
    # a module constant seen from inside a function
    assert rules("import torch\nWO = False\ndef f(p):\n    return torch.load(p, weights_only=WO)\n") == ["PY101"]
    # a function's own constant shadows the module's
    assert rules("import torch\nWO = False\ndef f(p):\n    WO = True\n    return torch.load(p, weights_only=WO)\n") == []


def test_a_value_set_in_a_branch_may_or_may_not_hold() -> None:
    source = "import torch\nWO = True\nif legacy:\n    WO = False\ntorch.load(p, weights_only=WO)\n"
    assert rules(source) == ["PY101"]
    source = "import torch\ndef f(p, weights_only=None):\n    if weights_only is None:\n        weights_only = False\n" \
        "    return torch.load(p, weights_only=weights_only)\n"
    assert rules(source) == ["PY101"]


def test_parameters_and_their_defaults() -> None:
    base = "import torch\ndef f(p, weights_only{}):\n    return torch.load(p, weights_only=weights_only)\n"
    assert rules(base.format("=True")) == []
    assert rules(base.format("=False")) == ["PY101"]
    assert rules(base.format("=None")) == ["PY101"]  # torch's own default
    assert rules(base.format("")) == ["PY306"]  # the caller decides: could not tell


def test_kwargs_forwarded_spread_or_spelled_out() -> None:
    hub = "from transformers import AutoModel\n"
    # the caller's **kwargs: judged at the caller
    assert rules(hub + "def f(name, **kwargs):\n    return AutoModel.from_pretrained(name, **kwargs)\n") == []
    # a dict spelled out in the code
    # the dict that enables it (it may leave the function) and the load it is spread into
    assert findings(hub + f"kw = dict(trust_remote_code=True)\nAutoModel.from_pretrained('org/m', revision='{COMMIT}', "
                    "**kw)\n") == [("PY201", 2), ("PY201", 3)]
    assert rules(hub + f"kw = {{'revision': '{COMMIT}'}}\nAutoModel.from_pretrained('org/m', **kw)\n") == []
    # a dict Airlock cannot see, for a repository the code names: could not tell
    assert sorted(rules(hub + "kw = load_config(p)\nAutoModel.from_pretrained('org/m', **kw)\n")) == ["PY306", "PY306"]
    # set by item assignment, then spread
    assert rules(hub + f"kw = {{}}\nkw['trust_remote_code'] = True\nAutoModel.from_pretrained('org/m', "
                 f"revision='{COMMIT}', **kw)\n") == ["PY201"]
    # nested options
    assert rules(f"from transformers import pipeline\npipeline('text-generation', model='org/m', revision='{COMMIT}', "
                 "model_kwargs={'trust_remote_code': True})\n") == ["PY201"]


def test_a_function_of_the_file_is_judged_at_its_callers_with_their_arguments() -> None:
    """A wrapper hides the decisive option from its own body; each call passes it."""
    torch = "import torch\ndef load(path, **kw):\n    return torch.load(path, **kw)\n"
    assert findings(torch) == [("PY306", 3)]  # on its own: could not tell
    assert findings(torch + "load('a.pt', weights_only=False)\n") == [("PY306", 3), ("PY101", 4)]
    assert findings(torch + "load('a.pt', weights_only=True)\n") == [("PY306", 3)]
    assert findings(torch + "WO = False\nload('a.pt', weights_only=WO)\n") == [("PY306", 3), ("PY101", 5)]
    (message,) = [f.message for f in scan_bytes((torch + "load('a.pt', weights_only=False)\n").encode(),
                                                "m.py").findings if f.rule == "PY101"]
    assert message.startswith("line 4, column 1: load(…) makes its line 3 risky") and "weights_only=False" in message
    # a repository id the caller names, floating or pinned
    hub = "from transformers import AutoModel\ndef fetch(repo, rev=None):\n" \
          "    return AutoModel.from_pretrained(repo, revision=rev)\n"
    assert findings(hub) == []  # plumbing: the repository and revision are the caller's
    assert findings(hub + "fetch('org/model')\n") == [("PY301", 4)]
    assert findings(hub + "fetch('org/model', rev='main')\n") == [("PY301", 4)]
    assert findings(hub + f"fetch('org/model', '{COMMIT}')\n") == []
    # already judged at the call itself (trust_remote_code=True in any call): said once
    rtc = "from transformers import AutoModel\ndef f(name, **kw):\n" \
          f"    return AutoModel.from_pretrained(name, revision='{COMMIT}', **kw)\n"
    assert findings(rtc + "f('org/x', trust_remote_code=True)\n") == [("PY201", 4)]
    # a named parameter with a safe default: a caller that overrides it, and one that passes its own
    # parameter on (its callers decide, as for the function itself: no "could not tell" here)
    safe = "import torch\ndef load(path, weights_only=True):\n    return torch.load(path, weights_only=weights_only)\n"
    assert findings(safe + "load('a.pt', weights_only=False)\n") == [("PY101", 4)]
    assert findings(safe + "def outer(p, wo):\n    return load(p, weights_only=wo)\n") == []
    # a recursive function is walked once more, not forever; *args at the call cannot be mapped
    assert findings("import torch\ndef f(p, **kw):\n    f(p, **kw)\n    return torch.load(p, weights_only=True)\n"
                    "f('a', x=1)\n") == []
    assert findings(torch + "load(*paths)\n") == [("PY306", 3)]


def test_functools_partial_is_judged_as_the_call_it_prepares() -> None:
    assert rules("import functools, torch\nload = functools.partial(torch.load, weights_only=True)\n") == []
    assert rules("import functools, torch\nload = functools.partial(torch.load, map_location='cpu')\n") == ["PY101"]


def test_risky_functions_passed_as_arguments() -> None:
    assert rules("import pickle\nobjs = list(map(pickle.loads, blobs))\n") == ["PY102"]
    assert rules("import torch\nds = DatasetFolder(root, loader=torch.load)\n") == ["PY101"]
    assert rules("import pickle\nisinstance(u, pickle.Unpickler)\n") == []


def test_self_produced_bytes_are_not_flagged_but_outside_bytes_are() -> None:
    assert rules("import pickle\ndata = pickle.dumps(obj)\nclone = pickle.loads(data)\n") == []
    assert rules("import pickle\ndata = pickle.dumps(obj)\ndata = read()\nclone = pickle.loads(data)\n") == ["PY102"]
    assert rules("import io, pickle\nbuf = io.BytesIO(payload)\nclone = pickle.load(buf)\n") == ["PY102"]


def test_taint_from_files_and_downloads_into_exec() -> None:
    assert rules("with open(p) as fh:\n    src = fh.read()\nexec(src)\n") == ["PY202"]
    assert rules("from pathlib import Path\nexec(Path(p).read_text())\n") == ["PY202"]
    assert rules("import requests, base64\nr = requests.get(u)\nexec(base64.b64decode(r.content))\n") == ["PY202"]
    assert rules("src = 'x = 1'\nexec(src)\n") == []
    assert rules("model.eval()\nopen(p).read()\n") == []


def test_imports_from_a_downloaded_folder() -> None:
    pinned = f"from huggingface_hub import snapshot_download\nd = snapshot_download('org/m', revision='{COMMIT}')\n"
    assert rules(pinned + "import importlib.util, os\n"
                 "spec = importlib.util.spec_from_file_location('m', os.path.join(d, 'm.py'))\n") == ["PY203"]
    assert rules(pinned + "import runpy\nrunpy.run_path(d)\n") == ["PY203"]
    assert rules("import sys\nsys.path.insert(0, 'vendor')\n") == []


def test_a_switch_after_a_download_is_not_a_load_of_it() -> None:
    """keras.config.enable_unsafe_deserialization() takes no file: it is PY107, not the load of the
    download before it; a load after it still is."""
    found = findings("import urllib.request, keras\nurllib.request.urlretrieve(URL, 'm.keras')\n"
                     "keras.config.enable_unsafe_deserialization()\n")
    assert found == [("PY107", 3)]
    found = findings("import urllib.request, keras, torch\nurllib.request.urlretrieve(URL, 'm.pt')\n"
                     "keras.config.enable_unsafe_deserialization()\ntorch.load('m.pt')\n")
    assert sorted(found) == [("PY101", 4), ("PY107", 3), ("PY305", 2)]


def test_download_then_load_without_a_hash_check() -> None:
    found = findings("import urllib.request, torch\ndef get():\n    urllib.request.urlretrieve(URL, 'm.pt')\n"
                     "    return torch.load('m.pt')\n")
    assert sorted(found) == [("PY101", 4), ("PY305", 3)]
    # in another function: not the same flow
    found = findings("import urllib.request, torch\ndef get():\n    urllib.request.urlretrieve(URL, 'm.pt')\n"
                     "def use():\n    return torch.load('m.pt')\n")
    assert found == [("PY101", 5)]
    # torch.hub's own hash check
    found = findings("import torch\ntorch.hub.download_url_to_file(URL, 'm.pt', hash_prefix='abc')\n"
                     "sd = torch.load('m.pt')\n")
    assert found == [("PY101", 3)]


def test_global_statement_writes_the_module_binding() -> None:
    source = "import torch\nWO = True\ndef set_unsafe():\n    global WO\n    WO = False\nset_unsafe()\n" \
        "torch.load(p, weights_only=WO)\n"
    # the function may run before the load: its global assignment counts (the conservative reading)
    assert rules(source) == ["PY101"]


def test_lambda_parameters_shadow_outer_names() -> None:
    assert rules("import torch\nf = lambda torch: torch.load(p)\n") == []
    assert rules("import torch\nf = lambda p: torch.load(p)\n") == ["PY101"]


def test_comprehensions_are_searched() -> None:
    assert rules("import torch\nsds = [torch.load(p) for p in paths]\n") == ["PY101"]


def test_columns_are_code_points_and_lines_are_the_files() -> None:
    result = scan_bytes("import torch\nx = 'é'; torch.load(p)\n".encode(), "m.py")
    (finding,) = [f for f in result.findings if f.rule == "PY101"]
    loc = finding.node.attrs["location"]
    assert (loc["line"], loc["column"]) == (2, 10)  # ast says byte 10 (é is 2 bytes); the 10th code point
    assert result.source.read(finding.offset, 10) == b"torch.load"
    result = scan_bytes(b"import torch\r\n\r\ntorch.load(p)\r\n", "crlf.py")
    (finding,) = [f for f in result.findings if f.rule == "PY101"]
    assert finding.node.attrs["location"]["line"] == 3 and result.source.read(finding.offset, 5) == b"torch"
