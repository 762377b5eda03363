"""The catalogue of known chat templates: every entry sourced and licensed, stored as the licence
allows, consistent with its own text, shipped in the wheel, and matched after whitespace."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from airlock.core import template_catalog as tc

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "resources" / "templates"
DATA = json.loads((FOLDER / tc.CATALOG_FILE).read_text("utf-8"))
ENTRIES = DATA["templates"]
REQUIRED_FAMILIES = ("Llama 2", "Llama 3", "Llama 3.1", "Llama 3.2", "Llama 3.3", "Llama 4", "Mistral / Mixtral",
                     "Mistral (tool use)", "Qwen 2", "Qwen 2.5", "Qwen 3", "DeepSeek V2", "DeepSeek V3",
                     "DeepSeek R1", "Gemma", "Gemma 2", "Gemma 3", "Phi 3", "Phi 4", "Command-R", "ChatML",
                     "Granite 3")


def test_the_major_families_are_catalogued():
    families = {e["family"] for e in ENTRIES}
    assert set(REQUIRED_FAMILIES) <= families, set(REQUIRED_FAMILIES) - families


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_entry_has_source_licence_and_is_stored_as_its_licence_allows(entry):
    assert entry["source"].startswith("https://github.com/") and entry["licence"]
    assert entry["origin"].startswith("https://huggingface.co/")
    stored = FOLDER / f"{entry['id']}.jinja"
    if entry["stored"] == "text":
        assert entry["licence"] in ("Apache-2.0", "MIT") and stored.is_file()
        text = stored.read_text("utf-8")
        rebuilt = tc.entry_for(text, {**entry, "redistribute": True})
        for key in ("sha256", "literals", "skeleton"):
            assert rebuilt[key] == entry[key], f"{key} is stale: rebuild the catalogue"
    else:
        assert entry["stored"] == "hash+skeleton" and not stored.exists()
        assert entry["why_not_stored"] and entry["skeleton"] and len(entry["sha256"]) == 64
        # A skeleton keeps structure and special tokens, never the prose.
        assert not any("You are" in line for line in entry["skeleton"])


def test_no_stray_files_in_the_resource_folder():
    expected = {f"{e['id']}.jinja" for e in ENTRIES if e["stored"] == "text"} | {tc.CATALOG_FILE}
    assert {p.name for p in FOLDER.iterdir()} == expected


def test_exact_match_ignores_whitespace_only():
    cat = tc.catalog()
    entry = next(e for e in cat.entries if e.id == "qwen3")
    text = entry.text()
    assert cat.exact(text) is entry
    assert cat.exact(text.replace("\n", "\n\n  ")) is entry
    assert cat.exact(text.replace("You are", "You were", 1)) is None


def test_families_sharing_one_template_are_named_together():
    cat = tc.catalog()
    llama31 = next(e for e in cat.entries if e.id == "llama-3.1-instruct")
    assert cat.families[llama31.sha256] == "Llama 3.1 / Llama 3.3"


def test_skeleton_keeps_tokens_and_hashes_prose():
    line = "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    skeleton = tc.skeleton_line(line)
    assert "<|im_start|>" in skeleton and "<|im_end|>" in skeleton and "«text:" in skeleton
    assert "helpful" not in skeleton


def test_drift_of_an_unrelated_template_is_none():
    assert tc.drift("{% for m in messages %}<<{{ m.content }}>>{% endfor %}") is None


def test_wheel_carries_the_catalogue(tmp_path):
    """`pip wheel .` (no dependencies, no build isolation) must ship resources/templates. Built from
    a copy, so that setuptools' build/ folder never lands in the checkout."""
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in ("core", "gui", "resources"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "airlock/resources/templates/catalog.json" in names
    assert {f"airlock/resources/templates/{e['id']}.jinja" for e in ENTRIES if e["stored"] == "text"} <= names
