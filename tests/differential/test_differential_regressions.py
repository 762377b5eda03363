"""Disagreements the differential harness found between a real loader and Airlock, each as a test
named after it. xfail(strict) would mark one reported to, and not yet fixed by, the module's owner."""

from __future__ import annotations

import pickle

from airlock.core.findings import Severity
from airlock.core.scan import scan_bytes


def test_joblib_hidden_array_payload_after_a_benign_pickle() -> None:
    """A benign pickle, then a joblib dump whose uint8 array bytes are pickle opcodes calling
    os.system. Alone, Airlock flags it (JBL004, critical). Stacked after another pickle, code that
    calls pickle.load until EOF reaches os.system in the second load (the differential harness's
    `pickle` loader did), but Airlock reported only "data-only". Found by test_differential with
    seed joblib_files/payload_hidden_in_array_bytes.joblib, mutation stacked_after_benign; fixed
    in core/formats/joblib.py by its owner."""
    from fixtures.joblib_files import hidden_in_array_bytes

    data = pickle.dumps({"lr": 0.1}, protocol=2) + hidden_in_array_bytes()
    result = scan_bytes(data, "stacked.joblib")
    try:
        assert result.severity >= Severity.HIGH, [(f.rule, f.message) for f in result.findings]
    finally:
        result.close()
