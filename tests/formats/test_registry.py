"""The format registry's contract: every module meets FormatModule, overlaps are declared or refused."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import corpus
import pytest

from airlock.core import formats
from airlock.core.context import ScanContext
from airlock.core.formats import contract
from airlock.core.formats.contract import RegistryConflict, check_names, check_sniff_ties, file_node
from airlock.core.source import Source
from airlock.core.tree import FILE, Node

ROOT = Path(__file__).resolve().parents[2]


def _format(name: str, extensions: tuple[str, ...], score: int, overlaps: tuple[str, ...] = ()) -> types.ModuleType:
    """A throw-away format module written the way real ones are: module-level names only."""
    module = types.ModuleType(f"throwaway_{name}")
    module.NAME = name
    module.EXTENSIONS = extensions
    module.sniff = lambda head, size: score if head.startswith(b"MAGIC") else 0
    module.parse = lambda source, ctx: file_node(source, ctx)
    if overlaps:
        module.OVERLAPS = overlaps
    return module


def test_the_registry_loads_and_every_module_meets_the_contract():
    modules = formats.load_all_modules()
    assert [m.__name__ for m in modules] == formats.MODULE_NAMES
    check_names(modules)  # what load_all_modules ran: no repeated name, no undeclared shared extension
    for module in modules:
        assert isinstance(module.NAME, str) and module.NAME
        assert isinstance(module.EXTENSIONS, tuple)
        assert callable(module.sniff) and callable(module.parse)
        for other in contract.overlaps(module):
            assert other in {m.NAME for m in modules}, f"{module.NAME} declares an overlap with unknown {other}"


def test_mypy_sees_every_registered_module():
    # The TYPE_CHECKING block assigns every module to FormatModule, so mypy (tests/test_lint.py) checks
    # each against the protocol; it must list exactly the registry.
    tree = ast.parse((ROOT / "core" / "formats" / "__init__.py").read_text())
    checked = next(node for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
                   and isinstance(node.target, ast.Name) and node.target.id == "CHECKED")
    assert isinstance(checked.value, ast.Tuple)
    names = [f"airlock.core.formats.{elt.id}" for elt in checked.value.elts if isinstance(elt, ast.Name)]
    assert names == formats.MODULE_NAMES


def test_no_two_formats_tie_on_any_generated_file():
    # The registry has no bytes of its own: every generated fixture (hostile and benign, all formats)
    # is sniffed by every format, and an undeclared tie at the top score is refused.
    modules = formats.load_all_modules()
    samples = [(name, Source.from_bytes(data, name)) for name, data, _ in corpus.all_fixtures()]
    assert len(samples) > 100
    check_sniff_ties(modules, samples)


def test_a_shared_extension_is_refused_unless_declared():
    first, second = _format("alpha", (".mdl",), 90), _format("beta", (".mdl", ".b"), 80)
    with pytest.raises(RegistryConflict) as refused:
        check_names([first, second])
    assert str(refused.value) == ("formats 'alpha' and 'beta' both claim the extension '.mdl': declare the "
                                  "overlap (OVERLAPS = ('alpha',) in throwaway_beta) or drop the extension "
                                  "from one of them")
    check_names([first, _format("beta", (".mdl",), 80, overlaps=("alpha",))])


def test_a_repeated_name_and_a_bad_extension_are_refused():
    with pytest.raises(RegistryConflict, match="format name 'alpha' is registered twice"):
        check_names([_format("alpha", (".a",), 1), _format("alpha", (".b",), 1)])
    with pytest.raises(RegistryConflict, match="extension 'MDL' must be lower case and start with a dot"):
        check_names([_format("alpha", ("MDL",), 1)])


def test_the_real_registry_refuses_a_conflicting_format(monkeypatch):
    # A deliberately conflicting format added to the real registry: loading it refuses, naming both.
    monkeypatch.setitem(sys.modules, "throwaway_pickle2", _format("pickle2", (".pkl",), 90))
    monkeypatch.setattr(formats, "MODULE_NAMES", [*formats.MODULE_NAMES, "throwaway_pickle2"])
    monkeypatch.setattr(formats, "_loaded", None)
    with pytest.raises(RegistryConflict, match=re.escape("'pickle2' both claim the extension '.pkl'")):
        formats.load_all_modules()
    monkeypatch.undo()
    assert len(formats.load_all_modules()) == len(formats.MODULE_NAMES)  # the real registry loads again


def test_same_bytes_at_the_same_score_are_refused_unless_declared():
    sample = [("a MAGIC file", Source.from_bytes(b"MAGIC and more", "x.bin"))]
    first, second = _format("alpha", (".a",), 70), _format("beta", (".b",), 70)
    with pytest.raises(RegistryConflict) as refused:
        check_sniff_ties([first, second], sample)
    assert str(refused.value) == ("formats 'alpha' and 'beta' both claim a MAGIC file with score 70: raise one "
                                  "score, or declare the overlap in OVERLAPS")
    check_sniff_ties([first, _format("beta", (".b",), 69)], sample)
    check_sniff_ties([first, _format("beta", (".b",), 70, overlaps=("alpha",))], sample)


def test_file_node_is_the_scan_placeholder_or_a_fresh_file_node():
    source = Source.from_bytes(b"abc", "f.bin")
    ctx = ScanContext()
    fresh = file_node(source, ctx)
    assert (fresh.kind, fresh.label, fresh.length) == (FILE, "f.bin", 3)
    ctx.current = placeholder = Node(FILE, "placeholder")
    assert file_node(source, ctx) is placeholder
