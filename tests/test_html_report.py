"""`airlock scan --format html`: one self-contained page, every string escaped, the whole review record."""

from __future__ import annotations

import hashlib
import pickle
from html.parser import HTMLParser

import pytest

from airlock.core.cli import main
from airlock.core.report import html as html_report

EVIL = b"\x80\x02cposix\nsystem\nq\x00X\x06\x00\x00\x00echo xq\x01\x85q\x02Rq\x03."
HOSTILE_NAME = "evil<script>alert(1)<\u202e><img src=x onerror=alert(2)>.pkl"


class Page(HTMLParser):
    """Every tag and attribute of the page, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def assert_self_contained(page: Page) -> None:
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "base", "form", "audio", "video"}
    for tag, attrs in page.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)  # no event handlers
        assert "src" not in attrs
        if "href" in attrs:
            assert str(attrs["href"]).startswith("#"), attrs  # links only within the page
    metas = [a for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert metas and "default-src 'none'" in str(metas[0]["content"])


@pytest.fixture
def folder(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / HOSTILE_NAME).write_bytes(EVIL)
    (models / "optimizer.pkl").write_bytes(pickle.dumps({"lr": 0.1}, protocol=4))
    (models / "legacy.bin").write_bytes(pickle.dumps([1, 2], protocol=2))  # extension mismatch: low AIR004
    return models


def render(capsys, *argv) -> tuple[int, str]:
    code = main(["scan", "--format", "html", *argv])
    return code, capsys.readouterr().out


def test_page_is_self_contained_and_escapes_every_string(folder, capsys):
    code, text = render(capsys, "--no-policy", "--hash", str(folder))
    assert code == 1
    page = Page(text)
    assert_self_contained(page)
    assert "<script>" not in text and "\u202e" not in text and "<img" not in text
    assert "&lt;script&gt;" in text  # shown, as text
    assert "\\u202e" in page.plain or "U+202E" in page.plain  # the bidi control made visible
    for path in folder.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() in text
    assert "PKL006" in page.plain and "CRITICAL" in page.plain
    assert "34 0x22" in page.plain  # the offset of the call, decimal and hex


def test_policy_changes_are_shown_with_their_entry_and_reason(folder, capsys, tmp_path):
    policy = tmp_path / "airlock.toml"
    policy.write_text('[[suppress]]\nrule = "AIR004"\npath = "*.bin"\nreason = "renamed <on purpose>"\n\n'
                      '[[override]]\nrule = "AIR010"\nseverity = "low"\nreason = "we track data-only files"\n')
    code, text = render(capsys, "--policy", str(policy), str(folder))
    page = Page(text)
    assert_self_contained(page)
    assert "suppressed by policy airlock.toml:1: renamed <on purpose>" in page.plain
    assert "severity info → low by policy airlock.toml:6: we track data-only files" in page.plain
    assert "class='suppressed'" in text
    assert "Policy file" in page.plain and "digest" in page.plain
    assert code == 1  # the hostile file still counts


def test_decisions_from_the_approvals_database_are_part_of_the_record(folder, capsys, tmp_path):
    db = str(tmp_path / "approvals.sqlite3")
    assert main(["approve", str(folder / "optimizer.pkl"), "--note", "ticket <SEC-1>", "--reviewer", "alice",
                 "--db", db, "--no-policy"]) == 0
    assert main(["reject", str(folder / HOSTILE_NAME), "--note", "runs a shell", "--reviewer", "bob",
                 "--db", db, "--no-policy"]) == 0
    capsys.readouterr()
    out = tmp_path / "report.html"
    code = main(["scan", "--format", "html", "--require-approved", "--db", db, "--no-policy", "-o", str(out),
                 str(folder)])
    assert code == 1 and capsys.readouterr().out == ""
    page = Page(out.read_text(encoding="utf-8"))
    assert_self_contained(page)
    assert "APPROVED by alice" in page.plain and "note: ticket <SEC-1>" in page.plain
    assert "REJECTED by bob" in page.plain and "REV002" in page.plain
    assert "REV001" in page.plain  # legacy.bin: a model file nobody decided about


def test_render_without_files_and_a_single_file_title():
    assert "0 file(s)" in Page(html_report.render([])).plain
    entry = {"path": "a.pkl", "format": "pickle", "severity": "none", "findings": []}
    page = Page(html_report.render([entry]))
    assert "Airlock report: a.pkl" in page.plain and "No findings." in page.plain
