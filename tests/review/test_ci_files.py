"""The pre-commit hook and the composite GitHub Action, tested offline: the hook's entry runs on a
temporary git repository holding a hostile and a clean model file, and the action's shell steps run as
scripts the way the runner runs them (`bash -e -o pipefail`, inputs in the environment, GITHUB_OUTPUT)."""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from provenance.hf_fake import safetensors_bytes

from airlock.core.review.gate import model_extensions

ROOT = Path(__file__).resolve().parents[2]
EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."
SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json").read_text())
BIN = str(Path(sys.executable).parent)  # where this environment's `airlock` command is


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "AIRLOCK_DB"}
    return {**base, "PATH": BIN + os.pathsep + base.get("PATH", ""), **extra}


# pre-commit

@pytest.fixture
def hooks() -> dict[str, dict]:
    return {entry["id"]: entry for entry in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}


@pytest.fixture
def hook(hooks) -> dict:
    return hooks["airlock-scan"]


def git_repo(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    return path


def run_hook(hook: dict, repo: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """What pre-commit does: the staged files its `files` pattern matches, passed to the entry."""
    staged = subprocess.run(["git", "-C", str(repo), "diff", "--cached", "--name-only", "-z"], capture_output=True,
                            check=True).stdout.decode().split("\0")
    pattern = re.compile(hook["files"])
    chosen = [f for f in staged if f and pattern.search(f) and (repo / f).is_file()]
    argv = [*shlex.split(hook["entry"]), *hook.get("args", []), *chosen]
    proc = subprocess.run(argv, cwd=repo, capture_output=True, text=True, env=env(), timeout=300, check=False)
    return proc, chosen


def test_hook_definition(hook):
    assert hook["id"] == "airlock-scan" and hook["language"] == "python"
    assert hook["entry"].split()[:2] == ["airlock", "scan"] and hook["types"] == ["file"]
    pattern = re.compile(hook["files"])
    for ext in model_extensions():  # every model format Airlock knows, by name
        assert pattern.search(f"dir/model{ext}") and pattern.search(f"MODEL{ext.upper()}"), ext
    for loaded_with_the_weights in ("config.json", "tokenizer_config.json", "chat_template.jinja",
                                    "model_config.yaml", "hparams.yml", "templates/x.j2"):
        assert pattern.search(loaded_with_the_weights), loaded_with_the_weights
    for other in ("README.md", "train.py", "tokenizer.model.txt", "notebook.ipynb"):
        assert not pattern.search(other), other


def test_the_code_hook_reads_python_and_notebooks(hooks, tmp_path):
    code = hooks["airlock-scan-code"]
    assert code["entry"].split()[:2] == ["airlock", "scan"] and code["types"] == ["file"]
    pattern = re.compile(code["files"])
    assert pattern.search("src/train.py") and pattern.search("eval.IPYNB") and not pattern.search("model.pt")
    files = {"train.py": b"import torch\nm = torch.load('model.pt', weights_only=False)\n", "README.md": b"# x\n"}
    proc, chosen = run_hook(code, git_repo(tmp_path / "code", files))
    assert chosen == ["train.py"] and proc.returncode == 1 and "PY" in proc.stdout, proc.stdout + proc.stderr


def test_hook_fails_on_a_poisoned_template_or_config(hook, tmp_path):
    """Regression (new-user trial): the hook's pattern skipped the templates and configs loaders read."""
    files = {"chat_template.jinja": b"{{ cycler.__init__.__globals__.os.popen('id').read() }}\n",
             "model_config.yaml": b"model:\n  _target_: os.system\n  command: id\n",
             "config.json": b'{"model_type": "llama"}\n'}
    proc, chosen = run_hook(hook, git_repo(tmp_path / "configs", files))
    assert sorted(chosen) == sorted(files)
    assert proc.returncode == 1 and "chat_template.jinja" in proc.stdout and "model_config.yaml" in proc.stdout


def test_hook_fails_on_a_hostile_file_and_passes_clean_ones(hook, tmp_path):
    files = {"models/evil.pkl": EVIL, "models/model.safetensors": safetensors_bytes(8),
             "models/optimizer.pt": pickle.dumps({"lr": 0.1}, protocol=2), "README.md": b"# models\n"}
    proc, chosen = run_hook(hook, git_repo(tmp_path / "hostile", files))
    assert sorted(chosen) == ["models/evil.pkl", "models/model.safetensors", "models/optimizer.pt"]
    assert proc.returncode == 1, proc.stderr
    assert "evil.pkl" in proc.stdout and "PKL006" in proc.stdout and "Traceback" not in proc.stderr
    del files["models/evil.pkl"]
    proc, chosen = run_hook(hook, git_repo(tmp_path / "clean", files))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(chosen) == 2


# The GitHub Action

@pytest.fixture
def action() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text())


def expand(value: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    """The runner's `${{ … }}` for what the action uses: inputs, github.action_path, step outputs."""
    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr.startswith("inputs."):
            return inputs[expr[len("inputs."):]]
        if expr == "github.action_path":
            return str(ROOT)
        if expr.startswith("steps.scan.outputs."):
            return outputs.get(expr.rsplit(".", 1)[1], "")
        raise AssertionError(f"expression the test does not know: {expr}")

    return re.sub(r"\$\{\{(.*?)\}\}", one, value)


def run_action(action: dict, workspace: Path, tmp_path: Path, **given: str) -> tuple[dict, list]:
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    inputs.update(given)
    outputs: dict[str, str] = {}
    results = []
    github_output = tmp_path / "github_output"
    for step in action["runs"]["steps"]:
        if "run" not in step:
            continue  # `uses:` steps (setup-python, upload-sarif) need GitHub; checked below
        assert step["shell"] == "bash"
        step_env = {k: expand(str(v), inputs, outputs) for k, v in step.get("env", {}).items()}
        github_output.write_text("")
        extra = {"GITHUB_OUTPUT": str(github_output), "XDG_DATA_HOME": str(tmp_path / "xdg")}
        if step["name"] == "Install Airlock":
            # Run for real, but as a dry run: pip resolves and builds the action's checkout, installs nothing
            # (this test must not replace the environment it runs in).
            # (pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation: an isolated build environment would
            # inherit PIP_DRY_RUN and stay empty.)
            extra.update(PIP_DRY_RUN="1", PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0")
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=workspace,
                              env=env(**step_env, **extra), capture_output=True, text=True, timeout=600,
                              check=False)
        results.append((step["name"], proc))
        for line in github_output.read_text().splitlines():
            key, _, value = line.partition("=")
            outputs[key] = value
        if proc.returncode != 0:
            break
    return outputs, results


@pytest.fixture
def workspace(tmp_path):
    top = tmp_path / "workspace"
    (top / ".git").mkdir(parents=True)
    (top / "models").mkdir()
    (top / "models" / "model.safetensors").write_bytes(safetensors_bytes(8))
    (top / "models" / "config.json").write_bytes(b'{"model_type": "bert"}')
    return top


def test_action_definition(action):
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    uses = [s["uses"] for s in steps if "uses" in s]
    assert uses == ["actions/setup-python@v5", "github/codeql-action/upload-sarif@v3"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert upload["with"]["sarif_file"] == "${{ inputs.sarif-file }}" and "always()" in upload["if"]
    for step in steps:
        assert "${{" not in step.get("run", ""), "inputs reach scripts through env, never pasted in"


@pytest.mark.slow
def test_action_scans_uploads_and_gates(action, workspace, tmp_path):
    outputs, results = run_action(action, workspace, tmp_path, paths="models")
    assert [name for name, _ in results] == ["Install Airlock", "Scan", "Gate"]
    assert all(p.returncode == 0 for _, p in results), [(n, p.stdout, p.stderr) for n, p in results]
    assert "Would install model-airlock" in results[0][1].stdout
    assert outputs["exit-code"] == "0"
    sarif = json.loads((workspace / "airlock.sarif").read_text())
    jsonschema.validate(sarif, SCHEMA)
    assert {a["location"]["uri"] for a in sarif["runs"][0]["artifacts"]} == {"models/model.safetensors",
                                                                               "models/config.json"}
    # upload-sarif ignores its `category` when the run has an id: the category is put into the id.
    assert re.fullmatch(r"airlock/[^/]+", sarif["runs"][0]["automationDetails"]["id"])

    (workspace / "models" / "evil.pkl").write_bytes(EVIL)
    outputs, results = run_action(action, workspace, tmp_path, paths="models", category="models-a",
                                  **{"sarif-file": "out/a.sarif"})
    assert outputs["exit-code"] == "1"
    sarif = json.loads((workspace / "out" / "a.sarif").read_text())
    jsonschema.validate(sarif, SCHEMA)
    assert re.fullmatch(r"models-a/[^/]+", sarif["runs"][0]["automationDetails"]["id"])
    name, gate = results[-1]
    assert name == "Gate" and gate.returncode == 1 and "::error::" in gate.stdout
    assert "PKL006" in (workspace / "out" / "a.sarif").read_text()


@pytest.mark.slow
def test_action_gate_requires_approvals(action, workspace, tmp_path):
    db = str(tmp_path / "approvals.sqlite3")
    subprocess.run([os.path.join(BIN, "airlock"), "approve", "models/config.json", "--note", "creates the db",
                    "--db", db, "--no-policy"], cwd=workspace, env=env(), check=True, capture_output=True)
    outputs, results = run_action(action, workspace, tmp_path, paths="models", db=db,
                                  **{"require-approved": "true"})
    assert outputs["exit-code"] == "1" and results[-1][1].returncode == 1
    assert "REV001" in (workspace / "airlock.sarif").read_text()
    subprocess.run([os.path.join(BIN, "airlock"), "approve", "models/model.safetensors", "--note", "reviewed",
                    "--db", db, "--no-policy"], cwd=workspace, env=env(), check=True, capture_output=True)
    outputs, results = run_action(action, workspace, tmp_path, paths="models", db=db,
                                  **{"require-approved": "true"})
    assert outputs["exit-code"] == "0" and results[-1][1].returncode == 0


def test_action_stops_when_airlock_cannot_start(action, workspace, tmp_path):
    outputs, results = run_action(action, workspace, tmp_path, paths="no-such-folder")
    name, scan = results[-1]
    assert name == "Scan" and scan.returncode == 2 and outputs["exit-code"] == "2"
    assert "no such file or directory" in scan.stderr and "::error::" in scan.stdout


def test_scan_output_into_a_missing_folder_is_exit_2_not_a_traceback(tmp_path, capsys):
    from airlock.core.cli import main

    (tmp_path / "a.pkl").write_bytes(pickle.dumps([1]))
    code = main(["scan", "--format", "sarif", "-o", str(tmp_path / "no" / "such" / "x.sarif"), str(tmp_path / "a.pkl")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and "Traceback" not in err
