"""core/ never imports Qt: it imports and scans with PySide6 made unimportable, and `airlock scan`
on a pickle imports none of the heavy libraries (DESIGN.md import budget)."""

import subprocess
import sys

CHILD = r"""
import sys
for name in ("PySide6", "shiboken6"):
    sys.modules[name] = None  # any import of them now raises ImportError
from airlock.core.scan import scan_bytes
result = scan_bytes(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00id\x85R.", "evil.pkl")
assert result.severity.label == "critical", result.findings
print("ok")
"""

BUDGET = r"""
import sys, pickle, tempfile, os
path = os.path.join(tempfile.mkdtemp(), "m.pkl")
with open(path, "wb") as fh:
    fh.write(pickle.dumps({"a": [1, 2, 3]}, protocol=2))
from airlock.core.cli import main
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["scan", "--format", "json", path])
heavy = ("PySide6", "numpy", "matplotlib", "onnx", "h5py", "jinja2", "gguf", "torch", "safetensors", "fickling",
         "tqdm", "pyseccomp", "subprocess")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print(code, loaded)
"""


def test_core_scans_with_pyside6_blocked():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_scanning_a_pickle_imports_no_heavy_library():
    proc = subprocess.run([sys.executable, "-c", BUDGET], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0 []"


def test_no_core_module_imports_qt():
    from pathlib import Path

    core = Path(__file__).resolve().parent.parent / "core"
    offenders = [str(p) for p in core.rglob("*.py")
                 if any(word in p.read_text() for word in ("import PySide6", "from PySide6", "PyQt"))]
    assert offenders == []
