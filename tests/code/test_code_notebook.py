"""Notebooks: cells as one module, IPython magics, positions in the raw .ipynb, nbformat 3 and 4."""

from __future__ import annotations

import json

import pytest

from airlock.core.code import CELL
from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes


def notebook(*cells: str | list[str] | tuple[str, str], language: str = "python", ensure_ascii: bool = False,
             newline: str = "\n") -> bytes:
    """A notebook as nbformat 4 writes it (sorted keys, indent=1). A cell given as a str is stored as a
    list of lines, a list as that list, a (type, text) pair as that cell type with one string."""
    out = []
    for i, cell in enumerate(cells):
        kind = "code"
        if isinstance(cell, tuple):
            kind, cell = cell
            source: str | list[str] = cell
        elif isinstance(cell, str):
            source = cell.splitlines(keepends=True)
        else:
            source = cell
        entry = {"cell_type": kind, "metadata": {}, "source": source}
        if kind == "code":
            entry.update(execution_count=i, outputs=[{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}])
        out.append(entry)
    doc = {"cells": out, "metadata": {"kernelspec": {"display_name": "K", "language": language, "name": "k"}},
           "nbformat": 4, "nbformat_minor": 5}
    text = json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=ensure_ascii) + "\n"
    return text.replace("\n", newline).encode("utf-8")


def scan(data: bytes, name: str = "nb.ipynb"):
    result = scan_bytes(data, name)
    assert result.format == "notebook", result.format
    return result


def risky(result) -> list:
    return [f for f in result.findings if f.severity > Severity.INFO]


def raw_at(data: bytes, loc: dict) -> str:
    line = data.decode("utf-8").splitlines()[loc["line"] - 1]
    return line[loc["column"] - 1:]


def test_cells_form_one_module_and_positions_point_into_the_raw_file() -> None:
    data = notebook("# setup\nimport torch as t\n", ("markdown", "Some *text*"), "x = 1\nm = t.load('é.pt')\n")
    result = scan(data)
    (finding,) = risky(result)
    assert finding.rule == "PY101"
    loc = finding.node.attrs["location"]
    assert (loc["cell"], loc["cell_line"], loc["cell_column"]) == (2, 2, 5)
    assert raw_at(data, loc).startswith("t.load('é.pt')")
    assert data[finding.offset:finding.offset + 6] == b"t.load"
    assert finding.message.startswith("cell 3, line 2, column 5:")
    cells = [n for n in result.root.walk() if n.kind == CELL]
    assert [c.attrs["index"] for c in cells] == [0, 2]  # code cells only
    for cell in cells:  # each cell node covers its JSON object in the file
        raw = data[cell.offset:cell.offset + cell.length]
        assert raw.startswith(b"{") and raw.endswith(b"}") and b'"cell_type": "code"' in raw
    assert finding.node.parent is cells[1] and finding.node.label.startswith("line 2: t.load(")


def test_a_cell_stored_as_one_string_with_escapes() -> None:
    data = notebook(("code", 'import pickle\nmsg = "a\\"b\\u00e9\U0001f600"; obj = pickle.loads(b)\n'),
                    ensure_ascii=True)
    result = scan(data)
    (finding,) = risky(result)
    loc = finding.node.attrs["location"]
    assert loc["line"] == loc["end_line"]  # both source lines sit on one raw line
    assert raw_at(data, loc).startswith("pickle.loads(b)")
    assert (loc["cell_line"], loc["cell_column"]) == (2, 28)  # the 28th code point of the line


def test_crlf_notebook_lines() -> None:
    data = notebook("import torch\ntorch.load(p)\n", newline="\r\n")
    (finding,) = risky(scan(data))
    assert raw_at(data, finding.node.attrs["location"]).startswith("torch.load(p)")


def test_magics_are_blanked_line_by_line_and_time_keeps_its_statement() -> None:
    data = notebook("%matplotlib inline\n!pip install torch\nimport torch\nfiles = !ls\nhelp?\n",
                    "%time sd = torch.load(p)\n%timeit -n 3 torch.load(p)\n",
                    "for p in paths:\n    !echo $p\n    torch.load(p)\n")
    result = scan(data)
    found = sorted((f.node.attrs["location"]["cell"], f.node.attrs["location"]["cell_line"],
                    f.node.attrs["location"]["cell_column"]) for f in risky(result))
    assert found == [(1, 1, 12), (1, 2, 14), (2, 3, 5)]  # "%time sd = " is 11 characters
    for f in risky(result):
        assert raw_at(data, f.node.attrs["location"]).startswith("torch.load(p)")


def test_cell_magics() -> None:
    data = notebook("%%bash\npython -c 'import pickle'\n", "%%time\nimport joblib\njoblib.load(p)\n",
                    "%%writefile helper.py\nimport torch\ntorch.load(p)\n", "%%writefile notes.txt\ntorch.load(p)\n",
                    "%%markdown\n# Notes\n")
    result = scan(data)
    calls = [f for f in result.findings if f.rule.startswith("PY")]
    assert sorted((f.rule, f.node.attrs["location"]["cell"]) for f in calls) == [("PY101", 2), ("PY103", 1)]
    # a shell cell runs and was not read: not inspected (medium); text cells are inert notes (info)
    assert sorted((f.rule, f.severity, f.message[:6]) for f in result.findings if not f.rule.startswith("PY")) == [
        ("AIR005", Severity.MEDIUM, "cell 1"), ("FC002", Severity.INFO, "cell 4"), ("FC002", Severity.INFO, "cell 5")]


def test_a_string_line_starting_with_bang_is_not_a_magic_when_the_cell_parses() -> None:
    data = notebook('import torch\ns = """\n!important\n"""\ntorch.load(p)\n')
    (finding,) = risky(scan(data))
    assert finding.node.attrs["location"]["cell_line"] == 5


def test_a_broken_cell_is_reported_and_the_others_still_checked() -> None:
    data = notebook("import torch\n", "def f(:\n", "torch.load(p)\n")
    result = scan(data)
    assert sorted(f.rule for f in risky(result)) == ["PY001", "PY101"]
    (broken,) = [f for f in result.findings if f.rule == "PY001"]
    assert broken.severity == Severity.MEDIUM and broken.node.attrs["location"]["cell"] == 1


def test_non_python_notebooks_are_noted_not_passed() -> None:
    result = scan(notebook("library(ggplot2)\nload('x.RData')\n", language="R"))
    assert [(f.rule, f.severity) for f in result.findings] == [("AIR005", Severity.MEDIUM)]
    assert "R notebook" in result.findings[0].message


def test_nbformat_3_worksheets() -> None:
    doc = {"metadata": {"name": ""}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": [
        {"cell_type": "code", "input": ["import torch\n", "torch.load(p)\n"], "language": "python", "outputs": []},
        {"cell_type": "code", "input": ["load(x)\n"], "language": "r", "outputs": []},
    ]}]}
    data = json.dumps(doc, indent=1).encode()
    result = scan(data)
    (call,) = [f for f in result.findings if f.rule == "PY101"]
    assert raw_at(data, call.node.attrs["location"]).startswith("torch.load(p)")
    assert any(f.rule == "AIR005" and "cell 2" in f.message for f in result.findings)


@pytest.mark.parametrize("data", [
    b'{"cells": [{"cell_type": "code", "source": "import torch\\n"}', b'{"cells": 3, "nbformat": 4}',
    b'{"cells": [{"cell_type": "code", "source": 3}], "nbformat": 4}', b'{"cells": [7], "nbformat": 4}',
    b'{"cells": [], "nbformat": 4, "x": "\xff"}',
])
def test_malformed_notebooks_are_high(data: bytes) -> None:
    result = scan(data)
    assert result.severity == Severity.HIGH
    assert {f.rule for f in result.findings} == {"AIR002"}


def test_clean_notebook_has_no_finding() -> None:
    result = scan(notebook("import numpy as np\nx = np.arange(3)\nprint(x.sum())\n"))
    assert result.findings == []
    assert result.severity == Severity.NONE
