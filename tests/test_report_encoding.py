"""Every report is valid for file names made of any bytes (issue 14, "Encodings").

On Linux a file name is bytes; Python carries the bytes that are not UTF-8 as lone surrogates.
JSON must stay strictly valid UTF-8 (the name with U+FFFD, plus the exact bytes in
`path_bytes_b64`), SARIF must not crash and must percent-encode the bytes into its URIs, text must
show an escaped name.
"""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote_to_bytes

import jsonschema
import pytest

from airlock.core.cli import main
from airlock.core.report import json_report, sarif, text
from airlock.core.report.paths import entry_path_bytes, path_fields
from airlock.core.text import safe_path

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json").read_text())
EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."
BAD = b"bad\xff\xfename\x80.pkl"  # not UTF-8
ODD = "odd \\ name\u202e\n ü.pkl"  # valid UTF-8, with a backslash, a bidi override and a newline

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="file names are UTF-16 there, not bytes")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), BAD), "wb") as fh:
        fh.write(EVIL)
    (root / ODD).write_bytes(EVIL)
    (root / "plain.pkl").write_bytes(b"\x80\x02K\x01.")
    return root


def run_cli(*argv):
    """A real process: what a CI job reads is its stdout bytes."""
    proc = subprocess.run([sys.executable, "-m", "airlock.core.cli", "scan", *argv], capture_output=True,
                          timeout=300, check=False)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")
    return proc


def strict_json(raw: bytes):
    """Parse as a strict parser would: UTF-8 only, and no string holding a lone surrogate."""
    doc = json.loads(raw.decode("utf-8"))

    def check(value):
        if isinstance(value, str):
            value.encode("utf-8")  # raises on a lone surrogate
        elif isinstance(value, dict):
            for k, v in value.items():
                check(k)
                check(v)
        elif isinstance(value, list):
            for v in value:
                check(v)

    check(doc)
    return doc


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_json_gives_valid_utf8_and_the_exact_bytes(folder, jobs):
    proc = run_cli("--format", "json", "--jobs", jobs, str(folder))
    assert proc.returncode == 1
    doc = strict_json(proc.stdout)
    by_bytes = {entry_path_bytes(f): f for f in doc["files"]}
    bad = by_bytes[os.fsencode(folder) + b"/" + BAD]
    assert bad["path"] == str(folder) + "/bad\ufffd\ufffdname\ufffd.pkl"
    assert base64.b64decode(bad["path_bytes_b64"]) == os.fsencode(folder) + b"/" + BAD
    assert bad["severity"] == "critical"
    odd = by_bytes[os.fsencode(str(folder / ODD))]
    assert odd["path"] == str(folder / ODD) and "path_bytes_b64" not in odd  # valid UTF-8: as it is
    assert "path_bytes_b64" not in by_bytes[os.fsencode(str(folder / "plain.pkl"))]


def _file_bytes(uri: str) -> bytes:
    """The name a SARIF URI stands for: files outside the repository root are absolute file: URIs."""
    return unquote_to_bytes(uri.removeprefix("file://"))


def test_sarif_percent_encodes_the_bytes_and_validates(folder):
    proc = run_cli("--format", "sarif", str(folder))
    assert proc.returncode == 1  # it used to crash here: traceback, exit 1, no report
    doc = strict_json(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    uris = [a["location"]["uri"] for a in doc["runs"][0]["artifacts"]]
    assert all(u.isascii() and " " not in u and "\n" not in u for u in uris)
    decoded = {_file_bytes(u) for u in uris}
    assert os.fsencode(folder) + b"/" + BAD in decoded
    assert os.fsencode(str(folder / ODD)) in decoded  # the backslash is part of the name, kept
    located = {_file_bytes(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
               for r in doc["runs"][0]["results"]}
    assert os.fsencode(folder) + b"/" + BAD in located


def test_text_shows_escaped_names(folder):
    proc = run_cli("--color", "never", str(folder))
    out = proc.stdout.decode("utf-8")
    assert "bad\\xff\\xfename\\x80.pkl" in out
    assert "odd \\ name\\u202e\\n ü.pkl" in out  # bidi override and newline escaped, ü shown
    assert "\u202e" not in out and "\udcff" not in out


def test_a_dead_worker_on_such_a_name_is_still_valid(folder, capsys, monkeypatch):
    from airlock.core import scan_worker

    real = scan_worker.scan_entry

    def dies_on_bad(display, path, limits):
        if os.fsencode(display).endswith(BAD):
            os._exit(3)
        return real(display, path, limits)

    monkeypatch.setattr(scan_worker, "scan_entry", dies_on_bad)
    assert main(["scan", "--format", "json", "--jobs", "2", str(folder)]) == 1
    doc = strict_json(capsys.readouterr().out.encode("ascii"))
    crashed = [f for f in doc["files"] if "path_bytes_b64" in f]
    assert len(crashed) == 1 and "worker process died" in crashed[0]["findings"][0]["message"]


def test_a_lone_surrogate_anywhere_still_gives_strict_json():
    entry = {**path_fields("x\udcff"), "format": "pickle", "severity": "high",
             "findings": [{"rule": "X", "severity": "high", "message": "from a new field \ud800!",
                           "offset": 1, "member": None, "node": None}]}
    for rendered in (json_report.render([entry]), sarif.render([entry])):
        doc = strict_json(rendered.encode("ascii"))
        assert "\ufffd" in json.dumps(doc, ensure_ascii=False)
    assert "x\\xff" in text.render([entry], colour=False)


def test_uri_is_never_read_as_a_scheme():
    from airlock.core.report.paths import uri

    assert uri(b"a:b.pkl") == "a%3Ab.pkl"
    assert uri(b"dir/x y\xff#?.pkl") == "dir/x%20y%FF%23%3F.pkl"


def test_safe_path_escapes_undecodable_bytes():
    assert safe_path(os.fsdecode(b"a\xffb")) == "a\\xffb"
    assert safe_path(b"a\xffb") == "a\\xffb"
    assert safe_path("é\x1b[31m") == "é\\x1b[31m"
