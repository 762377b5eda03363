"""SARIF for code findings: startLine is the line of the file as stored (for a notebook, the .ipynb line
holding the source line), startColumn is the code-point column (columnKind unicodeCodePoints), and
notebook results carry the cell and the line within it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from airlock.core.cli import main

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "sarif-schema-2.1.0.json").read_text())


def sarif(capsys, *paths: Path) -> dict:
    main(["scan", "--format", "sarif", *map(str, paths)])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_python_regions_are_lines_and_code_point_columns(tmp_path, capsys) -> None:
    path = tmp_path / "train.py"
    path.write_text("import torch\n\n\ndef f(p):\n    label = 'ünïcode'; sd = torch.load(p)\n", encoding="utf-8")
    (run,) = sarif(capsys, path)["runs"]
    assert run["columnKind"] == "unicodeCodePoints"
    (result,) = [r for r in run["results"] if r["ruleId"] == "PY101"]
    region = result["locations"][0]["physicalLocation"]["region"]
    line = path.read_text(encoding="utf-8").splitlines()[region["startLine"] - 1]
    assert region["startLine"] == 5
    assert line[region["startColumn"] - 1:region["endColumn"] - 1] == "torch.load(p)"
    assert "byteOffset" not in region and "cell" not in result["properties"]


def test_notebook_regions_point_at_the_raw_ipynb_line(tmp_path, capsys) -> None:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Fine-tune\n"]},
        {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [],
         "source": ["import torch\n", "model = torch.load('ckpt.pt')\n"]},
    ]
    text = json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1,
                      sort_keys=True) + "\n"
    path = tmp_path / "train.ipynb"
    path.write_text(text)
    (run,) = sarif(capsys, path)["runs"]
    (result,) = [r for r in run["results"] if r["ruleId"] == "PY101"]
    region = result["locations"][0]["physicalLocation"]["region"]
    raw_line = text.splitlines()[region["startLine"] - 1]
    assert raw_line.strip().startswith('"model = torch.load(')
    assert raw_line[region["startColumn"] - 1:].startswith("torch.load('ckpt.pt')")
    assert (result["properties"]["cell"], result["properties"]["cell_line"], result["properties"]["cell_column"]) == \
        (1, 2, 9)


def test_binary_findings_keep_their_byte_regions(tmp_path, capsys) -> None:
    (tmp_path / "evil.pkl").write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x01\x00\x00\x00xq\x01\x85q\x02Rq\x03.")
    (run,) = sarif(capsys, tmp_path)["runs"]
    region = run["results"][0]["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 1 and isinstance(region["byteOffset"], int)
