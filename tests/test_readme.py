"""The README's two commands stay true: CI runs the README's test command word for word."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.strip().splitlines()]


def test_readme_opens_with_run_and_test_commands():
    run, test = _readme_commands()[:2]
    assert run.startswith("pip install .") and "airlock demo" in run
    assert test.startswith("pip install -e '.[test]'") and "pytest" in test


def test_ci_runs_the_readme_test_command():
    test = _readme_commands()[1]
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()
