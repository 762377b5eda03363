"""TorchScript archives written by torch.jit.save: code as text nodes, pickles scanned, custom ops rated."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from fixtures.torch_files import EVIL_P2, Member, build_zip, rules, scan, tensors, zip_members

from airlock.core.convert.torch_input import read_checkpoint
from airlock.core.errors import FormatError
from airlock.core.findings import Severity


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.register_buffer("scale", torch.ones(2, dtype=torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)) * self.scale.float()


def _jit_bytes(module: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.13 deprecates scripting; archives it writes still exist and must read clean.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def scripted() -> bytes:
    return _jit_bytes(Net())


def test_benign_scripted_module_is_clean(scripted):
    result = scan(scripted)
    assert result.format == "torchscript"
    assert result.severity == Severity.NONE, [f.message for f in result.findings]
    assert "TZ001" not in rules(result)  # torch.load(weights_only=True) refuses TorchScript
    assert {"fc.weight", "fc.bias", "scale"} <= set(tensors(result))
    globs = {n.label: n.attrs["policy"] for n in result.root.walk() if n.kind == "global"}
    net = next(name for name in globs if name.startswith("__torch__.") and name.endswith(".Net"))
    assert globs[net] == "safe"


def test_code_members_are_text_nodes(scripted):
    result = scan(scripted)
    texts = {n.label: n for n in result.root.walk() if n.kind == "text"}
    main = next(n for label, n in texts.items() if label.endswith("test_torchscript.py"))
    assert "def forward" in main.attrs["text"]
    assert main.attrs["lines"] > 3
    pickles = {n.parent.label for n in result.root.walk() if n.kind == "pickle"}
    assert any(p.endswith("constants.pkl") for p in pickles)
    assert any(p.endswith("data.pkl") for p in pickles)


def test_custom_operator_namespace_is_medium():
    torch.library.define("airlock_test::twice", "(Tensor x) -> Tensor")

    @torch.library.impl("airlock_test::twice", "cpu")
    def _twice(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    class UsesOp(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.airlock_test.twice(x)

    result = scan(_jit_bytes(UsesOp()))
    assert result.severity == Severity.MEDIUM
    finding = next(f for f in result.findings if f.rule == "TS001")
    assert "airlock_test" in finding.message
    assert "/code/__torch__/" in finding.member


def test_standard_namespaces_are_not_custom(scripted):
    members = zip_members(scripted)
    code = next(m for m in members if m.name.endswith("test_torchscript.py"))
    code.data += b"\n# ops.aten.add ops.prim.NumToTensor ops.quantized.linear\n"
    assert "TS001" not in rules(scan(build_zip(members)))


def test_dangerous_pickles_in_torchscript_are_still_critical(scripted):
    members = zip_members(scripted)
    const = next(m for m in members if m.name.endswith("constants.pkl"))
    const.data = EVIL_P2
    assert scan(build_zip(members)).severity == Severity.CRITICAL


def test_code_crc_is_checked(scripted):
    members = zip_members(scripted)
    code = next(m for m in members if m.name.endswith("test_torchscript.py"))
    code.crc = 0xCAFEF00D
    assert "ZIP004" in rules(scan(build_zip(members)))


def test_torch_classes_outside_torchscript_are_not_trusted(scripted):
    # Without constants.pkl torch.load unpickles data.pkl with Python's unpickler, so `__torch__`
    # names are ordinary unknown classes there.
    members = [m for m in zip_members(scripted) if not m.name.endswith("constants.pkl")]
    result = scan(build_zip(members))
    assert result.format == "torch_zip"
    assert result.severity == Severity.MEDIUM


def test_read_checkpoint_refuses_torchscript(scripted, tmp_path):
    path = tmp_path / "scripted.pt"
    path.write_bytes(scripted)
    with pytest.raises(FormatError, match="torchscript"):
        read_checkpoint(path)


def test_member_list_is_complete(scripted):
    result = scan(scripted)
    names = {n.label for n in result.root.walk(expand_lazy=True) if n.kind in ("member", "text")}
    expected = {m.name for m in zip_members(scripted)}
    assert expected <= names
    assert all(isinstance(m, Member) for m in zip_members(scripted))


# Code that touches files or the process (TS002): real torch.jit.script output, and hand-edited code.

from fixtures import torchscript_files as TSF  # noqa: E402 - grouped with the tests that use it


@pytest.mark.parametrize(("name", "callee", "line"), [
    ("reads_a_file.pt", "torch.from_file", 'torch.from_file("/etc/hostname"'),
    ("writes_a_file.pt", "torch.save", 'torch.save(x, "/tmp/airlock_marker.pt")'),
    ("edited_os_system.pt", "os.system", "os.system('echo AIRLOCK_MARKER')"),
    ("edited_dunder_import.pt", "__import__", "__import__('os')"),
    ("edited_python_op.pt", "PythonOp", "ops.prim.PythonOp("),
    ("edited_import_subprocess.pt", "import subprocess", "import subprocess"),
])
def test_code_that_touches_files_or_runs_python_is_high_with_its_line(name, callee, line):
    data = TSF.hostile()[name]
    result = scan(data)
    assert result.format == "torchscript"
    (finding,) = [f for f in result.findings if f.rule == "TS002"]
    assert finding.severity == Severity.HIGH and result.severity == Severity.HIGH
    assert f"uses {callee}:" in finding.message and line in finding.message
    # The offset points at the call inside the code member, which the finding names.
    code = next(m for m in zip_members(data) if m.name == finding.member)
    assert code.data[finding.offset:].decode().startswith(callee.split()[0])


def test_real_scripted_files_that_read_and_write_really_compile():
    # The hostile archives are what torch.jit.script makes of ordinary Python: nothing hand-made.
    with zipfile_of(TSF.hostile()["reads_a_file.pt"]) as zf:
        code = next(zf.read(n) for n in zf.namelist() if n.endswith(".py") and b"from_file" in zf.read(n))
    assert b'torch.from_file("/etc/hostname", False, 4' in code


@pytest.mark.parametrize("name", sorted(TSF.benign()))
def test_benign_real_models_stay_clean(name):
    result = scan(TSF.benign()[name])
    assert result.format == "torchscript"
    assert result.findings == [], [f.message for f in result.findings]


@pytest.mark.parametrize("line", ["ops.aten.system('x')", "torch.ops.aten.popen('x')", "_ = requests.get('x')",
                                  "_ = torch.compile(self)", "_ = dill.loads(b)", "execfile('x.py')"])
def test_operators_and_modules_peers_flag_are_caught(scripted, line):
    members = zip_members(scripted)
    code = next(m for m in members if m.name.endswith("test_torchscript.py"))
    code.data += b"\n    " + line.encode() + b"\n"
    assert "TS002" in rules(scan(build_zip(members)))


def test_mentions_in_strings_are_not_calls(scripted):
    members = zip_members(scripted)
    code = next(m for m in members if m.name.endswith("test_torchscript.py"))
    code.data += b'\n    _1 = "open(x) os.system subprocess.run __import__(y)"\n    _2 = self.eval()\n'
    assert "TS002" not in rules(scan(build_zip(members)))


def test_many_dangerous_lines_are_capped(scripted):
    members = zip_members(scripted)
    code = next(m for m in members if m.name.endswith("test_torchscript.py"))
    code.data += b"".join(b"\n    _%d = torch.from_file('/etc/passwd', False, 1)" % i for i in range(25))
    found = [f for f in scan(build_zip(members)).findings if f.rule == "TS002"]
    assert len(found) == 11 and found[-1].message.startswith("15 more lines")


def zipfile_of(data):
    import zipfile

    return zipfile.ZipFile(io.BytesIO(data))
