"""Python source files: recognised by content (or a .py name for plain text), decoded as CPython
does, never imported or run; budgets end in findings; a clean module has nothing above info."""

from __future__ import annotations

import json

import pytest

from airlock.core import inspection
from airlock.core.cli import main
from airlock.core.findings import Severity
from airlock.core.formats import python_code
from airlock.core.limits import DEFAULT_LIMITS
from airlock.core.scan import scan_bytes, scan_file
from airlock.core.source import Source


def sniff(data: bytes, name: str = "unnamed") -> int:
    return python_code.sniff_source(Source.from_bytes(data, name))


@pytest.mark.parametrize("head", [
    b"#!/usr/bin/env python3\nprint('hi')\n", b"import os\n", b"import numpy as np, torch\n",
    b"from .utils import x\n", b"from typing import (\n    Any,\n)\n", b'"""Doc."""\n\ndef main(argv):\n    pass\n',
    b"class Model(nn.Module):\n    pass\n", b"async def run(x) -> None:\n    pass\n",
    b"if __name__ == '__main__':\n    main()\n", b"# -*- coding: latin-1 -*-\nimport os\nx = '\xe9'\n",
])
def test_python_is_recognised_by_content(head: bytes) -> None:
    assert sniff(head) >= 35


@pytest.mark.parametrize("head", [
    b"import java.util.List;\npublic class A {}\n", b"import React from 'react';\n", b'package main\nimport "fmt"\n',
    b"package com.x\nimport kotlin.math.PI\nfun main() {}\n", b"#include <stdio.h>\n", b"def foo(x)\n  x\nend\n",
    b'{"cells": []}', b"\x80\x02cos\nsystem\n.", b"import os\x00\x01\x02",
])
def test_other_text_and_binaries_are_not_python(head: bytes) -> None:
    assert sniff(head) == 0


def test_documents_with_code_samples_are_not_python() -> None:
    readme = b"# Model\n\n```python\nimport torch\nm = torch.load('x.pt')\n```\n"
    assert sniff(readme, "notes") == 0
    assert sniff(b"import torch\ntorch.load(p)\n", "README.md") == 0
    assert scan_bytes(b"Usage:\n\nimport torch\ntorch.load(p)\n", "HOWTO.rst").format != "python"


def test_plain_text_named_py_is_read_as_python() -> None:
    assert sniff(b"print('hello')\n", "script.py") == 5
    assert sniff(b"print('hello')\n", "notes.txt") == 0
    assert sniff(b"", "pkg/__init__.py") == 0  # empty: the scanner's "empty file" note (FC003)
    result = scan_bytes(b"__import__('pickle').loads(open('x', 'rb').read())\n", "one_liner.py")
    assert result.format == "python" and [f.rule for f in result.findings] == ["PY102"]


def test_clean_module_gives_nothing_above_info(tmp_path) -> None:
    source = "import pickle\nimport torch\n\n\ndef save(model, path):\n    torch.save(model.state_dict(), path)\n" \
        "    return pickle.dumps(model.config)\n"
    result = scan_bytes(source.encode(), "clean.py")
    assert result.severity <= Severity.INFO
    assert [f.rule for f in result.findings] == ["PY100"]


def test_decoding_follows_pep_263() -> None:
    latin = "# -*- coding: latin-1 -*-\nimport torch\nx = 'é'; torch.load(p)\n".encode("latin-1")
    result = scan_bytes(latin, "latin.py")
    (finding,) = [f for f in result.findings if f.rule == "PY101"]
    assert finding.node.attrs["location"]["column"] == 10 and latin[finding.offset:finding.offset + 5] == b"torch"
    bom = "\ufeffimport torch\ntorch.load(p)\n".encode()
    result = scan_bytes(bom, "bom.py")
    (finding,) = [f for f in result.findings if f.rule == "PY101"]
    assert bom[finding.offset:finding.offset + 5] == b"torch"


def test_a_codec_airlock_does_not_load_is_high() -> None:
    result = scan_bytes(b"# coding: utf-7\nimport os\n+AAo-import pickle\n", "utf7.py")
    assert [(f.rule, f.severity) for f in result.findings] == [("PY001", Severity.HIGH)]
    assert "utf-7" in result.findings[0].message


@pytest.mark.parametrize(("data", "why"), [
    (b"import os\nx = '\xff\xfe'\n", "not valid utf-8"),
    (b"\xef\xbb\xbf# coding: latin-1\nimport os\n", "byte order mark"),
])
def test_undecodable_source_is_medium_never_clean(data: bytes, why: str) -> None:
    result = scan_bytes(data, "odd.py")
    assert result.format == "python"
    assert [(f.rule, f.severity) for f in result.findings] == [("PY001", Severity.MEDIUM)]
    assert why in result.findings[0].message.lower()
    assert inspection.derive(result.format, result.root, result.findings) == inspection.PARTIAL


def test_syntax_errors_are_medium_with_their_line() -> None:
    result = scan_bytes(b"import os\n\nprint 'python 2'\n", "py2.py")
    (finding,) = result.findings
    assert (finding.rule, finding.severity) == ("PY001", Severity.MEDIUM)
    assert finding.node.attrs["location"]["line"] == 3 and "line 3" in finding.message


def test_nesting_too_deep_for_the_parser_is_a_limit_finding() -> None:
    result = scan_bytes(b"import os\nx = " + b"-" * 200_000 + b"1\n", "deep.py")
    assert [f.rule for f in result.findings] == ["AIR003"]
    result = scan_bytes(b"import os\nx = a" + b"+a" * 300_000 + b"\n", "long.py")
    assert [f.rule for f in result.findings] == ["AIR003"]


def test_expressions_deeper_than_the_walker_goes_are_fine() -> None:
    # deep enough for ast, far deeper than the evaluator's bound: it must neither recurse nor crash
    source = "import torch\nWO = " + "(" * 150 + "False" + ")" * 150 + "\nx = " + " + ".join(["a"] * 400) + \
        "\ntorch.load(p, weights_only=WO)\n"
    result = scan_bytes(source.encode(), "deep_ok.py")
    assert [f.rule for f in result.findings] == ["PY101"]


def test_size_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python_code, "MAX_SOURCE_BYTES", 1000)  # the budget, scaled down
    result = scan_bytes(b"import os\n" + b"x = 1\n" * 400, "big.py")
    assert [(f.rule, f.severity) for f in result.findings] == [("AIR003", Severity.HIGH)]
    assert "over the 1,000-byte budget" in result.findings[0].message


@pytest.mark.slow
def test_time_budget_is_checked_inside_the_walk(tmp_path) -> None:
    path = tmp_path / "slow.py"
    path.write_text("import torch\n" + "def f():\n    torch.load(p)\n" * 20_000)
    result = scan_file(path, limits=DEFAULT_LIMITS.replace(time_budget_s=1e-9))
    assert any(f.rule == "AIR003" and "time budget" in f.message for f in result.findings)


def test_a_repository_scan_covers_models_and_code(tmp_path, capsys) -> None:
    import pickle

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("import torch\n\ndef load(p):\n    return torch.load(p)\n")
    (tmp_path / "src" / "util.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "src" / "__init__.py").write_text("")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    code = main(["scan", "--format", "json", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    files = {f["path"].rsplit("/", 1)[-1]: f for f in doc["files"]}
    assert code == 1
    assert files["train.py"]["severity"] == "high" and files["train.py"]["format"] == "python"
    (finding,) = files["train.py"]["findings"]
    assert finding["location"] == {"line": 4, "column": 12, "end_line": 4, "end_column": 25}
    assert files["util.py"]["findings"] == [] and files["util.py"]["inspected"] == "full"
    assert [f["rule"] for f in files["__init__.py"]["findings"]] == ["FC003"]
    assert files["model.pkl"]["format"] == "pickle"


def test_scanning_a_pickle_pays_nothing_for_the_code_checks() -> None:
    import subprocess
    import sys

    code = ("import pickle, sys\nfrom airlock.core.scan import scan_bytes\n"
            "scan_bytes(pickle.dumps({'w': [1.0]}), 'm.pkl')\n"
            "print(sorted(m for m in ('ast', 'airlock.core.code.walker', 'airlock.core.code.reader') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
