"""The THREATS.md pickle corpus: every hostile fixture high or critical, naming what it reaches;
every benign one below high; and CPython's own unpickler confirms each fixture does what it says."""

from __future__ import annotations

import pickle
import warnings

import pytest
from cpython_trace import trace
from fixtures import pickle_files as pf

from airlock.core import formats
from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes

HOSTILE = pf.hostile_cases()
BENIGN = pf.benign_cases()


def _scan(data: bytes, name: str):
    result = scan_bytes(data, name)
    result.close()
    return result


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_pickle_is_flagged_and_names_its_target(case: pf.Hostile) -> None:
    result = _scan(case.data, case.filename)
    assert result.format in ("pickle", "compressed"), result.findings
    assert result.severity >= case.severity, [(f.rule, f.message) for f in result.findings]
    assert any(f.rule == case.rule and case.text in f.message for f in result.findings), \
        [(f.rule, f.message) for f in result.findings]
    assert not any(f.rule == "AIR001" for f in result.findings), "parser crashed"
    assert all(f.offset is not None for f in result.findings if f.severity >= Severity.HIGH)


def _target_name(case: pf.Hostile) -> str | None:
    return case.text if "." in case.text and " " not in case.text else None


REACHABLE = [c for c in HOSTILE if _target_name(c) and c.name != "dotted/global_opcode_proto2"]


@pytest.mark.parametrize("case", REACHABLE, ids=[c.name for c in REACHABLE])
def test_cpython_unpickler_reaches_what_the_fixture_claims(case: pf.Hostile) -> None:
    """The C unpickler (imports stubbed) imports or calls the named target: the fixture is real."""
    seen = trace(case.data)
    assert seen.reached(case.text), (seen.imported, seen.called, seen.errors)


def test_dotted_names_under_protocol_2_are_an_over_approximation() -> None:
    """CPython walks dotted names only under protocol >= 4; Airlock walks them under every protocol."""
    case = next(c for c in HOSTILE if c.name == "dotted/global_opcode_proto2")
    assert not trace(case.data).called
    assert _scan(case.data, "x.pkl").severity == Severity.CRITICAL


def test_nullifai_truncated_stream_runs_the_call_before_failing() -> None:
    """The loader reaches os.system and only then fails: so the scan is critical, not just malformed."""
    case = next(c for c in HOSTILE if c.name == "truncated/no_stop")
    seen = trace(case.data)
    assert "os.system" in seen.called and seen.errors
    result = _scan(case.data, "x.pkl")
    assert {f.rule for f in result.findings} >= {"PKL006", "AIR002"}


@pytest.mark.parametrize("name", ["frame_straddle/global_line", "frame_straddle/bytes_length"])
def test_frame_straddles_read_differently_with_and_without_peek(name: str) -> None:
    """The same bytes: harmless through a peekable file, a payload through io.BytesIO (torch.load)."""
    case = next(c for c in HOSTILE if c.name == name)
    assert case.text not in trace(case.data, peek=True).called  # e.g. argparse.subprocess.Popen
    assert case.text in trace(case.data).called
    findings = _scan(case.data, "data.pkl").findings
    assert any(f.rule == "PKL010" for f in findings)
    assert any(f.rule == "PKL006" and "as torch.load reads it" in f.message for f in findings)


def test_shared_memo_payload_runs_when_one_unpickler_loads_twice() -> None:
    import io

    from cpython_trace import Trace, _Recorder

    case = next(c for c in HOSTILE if c.name == "stacked/shared_memo")
    assert pf.UNKNOWN_DOTTED not in trace(case.data).called  # fresh Unpickler per load: fails
    seen = Trace()
    unpickler = _Recorder(io.BytesIO(case.data), seen, 2)
    unpickler.load()
    unpickler.load()
    assert seen.called == [pf.UNKNOWN_DOTTED]


def test_stacked_payload_is_run_by_a_loader_calling_load_again() -> None:
    case = next(c for c in HOSTILE if c.name == "stacked/fifth")
    seen = trace(case.data)
    assert seen.loads == 5 and seen.called == ["os.system"]


@pytest.mark.parametrize("case", BENIGN, ids=[c.name for c in BENIGN])
def test_benign_pickle_stays_below_high(case: pf.Benign) -> None:
    result = _scan(case.data, "model.pkl")
    assert result.format == "pickle"
    assert result.severity <= case.worst < Severity.HIGH, [(f.rule, f.message) for f in result.findings]
    data_only = any(f.rule == "AIR010" for f in result.findings)
    assert data_only == case.data_only, [(f.rule, f.message) for f in result.findings]


HAND_WRITTEN = [c for c in BENIGN if c.name.startswith(("np1_", "codecs_"))]


@pytest.mark.parametrize("case", HAND_WRITTEN, ids=[c.name for c in HAND_WRITTEN])
def test_hand_written_benign_pickles_are_what_numpy_1_wrote(case: pf.Benign) -> None:
    """The assembled numpy 1 pickles load with the real unpickler (numpy 2 keeps numpy.core as an alias)."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        value = pickle.loads(case.data)
    if case.name == "codecs_encode_bytes_p0":
        assert value == b"\xff\x00"
    else:
        assert isinstance(value, np.ndarray | np.generic)


@pytest.mark.parametrize("ext", pf.EXTENSION_LIES)
def test_content_decides_and_a_lying_extension_is_low(ext: str) -> None:
    result = _scan(pf.call("os", "system", pf.MARKER), f"model{ext}")
    assert result.format == "pickle"
    assert result.severity == Severity.CRITICAL
    mismatch = [f for f in result.findings if f.rule == "AIR004"]
    owner = formats.known_extensions().get(ext)
    claimed_by_other = owner is not None and ext not in formats.by_name("pickle").EXTENSIONS
    assert bool(mismatch) == claimed_by_other
    assert all(f.severity == Severity.LOW for f in mismatch)


def test_corpus_covers_every_threats_class() -> None:
    families = {c.name.split("/")[0] for c in HOSTILE}
    assert families >= {"call", "py2_names", "stack_global", "dotted", "resolver", "getattr", "operator",
                        "dunder", "ext", "stacked", "long_prefix", "truncated", "malformed", "gadget",
                        "unknown", "reference", "only_through", "compressed", "extension_lie"}
    gadget_families = {c.name.split("/")[1] for c in HOSTILE if c.name.startswith("gadget/")}
    assert len(gadget_families) >= 30
    only = {c.name.split("/")[1] for c in HOSTILE if c.name.startswith("only_through/")}
    assert only >= {"memo", "dup", "computed_stack_global", "getattr", "build_setstate", "ext_registered"}
