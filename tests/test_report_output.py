"""A report never replaces a file it is about: `scan -o`, `lock -o` and `diff -o` naming one of their inputs
exit 2 and leave it as it was (regression from the new-user trial: the checkpoint under review became its
own JSON report). A report beside the files, or a lock inside the locked folder, is still written."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from airlock.core.cli import main


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "m.pt"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    return path


@pytest.mark.parametrize("argv", [
    ["scan", "--format", "json", "-o", "m.pt", "m.pt"],
    ["scan", "-o", "./m.pt", "m.pt"],
    ["lock", "m.pt", "-o", "m.pt"],
    ["diff", "-o", "m.pt", "other.pt", "m.pt"],
])
def test_the_output_is_never_an_input(model: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    (model.parent / "other.pt").write_bytes(model.read_bytes())
    before = model.read_bytes()
    assert main(argv) == 2
    assert "refusing to write" in capsys.readouterr().err and model.read_bytes() == before


def test_a_hard_link_to_an_input_is_the_input(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.link(model, model.parent / "report.json")
    assert main(["scan", "--format", "json", "-o", "report.json", "m.pt"]) == 2
    assert model.read_bytes().startswith(b"\x80\x02")
    capsys.readouterr()


def test_reports_beside_the_files_and_locks_inside_the_folder_are_written(model: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--format", "json", "-o", "report.json", "m.pt"]) == 0
    assert main(["lock", ".", "-o", "airlock.lock"]) == 0
    assert main(["lock", ".", "-o", "airlock.lock"]) == 0  # locking again replaces the lock, not a model file
    assert (model.parent / "airlock.lock").read_text().count("m.pt") >= 1
    capsys.readouterr()
