"""Airlock's code checks against Bandit and Trail of Bits' semgrep rules, on the same anchor cases.

    python benchmarks/code_anchors.py          # needs `pip install bandit` for the Bandit column

The cases (tests/code/code_anchor_cases.py) carry a truth label (loads in a way that can run code,
or fetches a floating revision) and each anchor's own documented label. Airlock and Bandit are run
on every case; Trail of Bits' column is their test files' labels (semgrep is not run here). A
"catch" is any finding on a true case; a "false alarm" any finding on a case that is not (Airlock's
info notes, such as "imports pickle", are not alarms; every Bandit issue is).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "code"))

from code_anchor_cases import CASES  # noqa: E402

from airlock.core.findings import Severity  # noqa: E402
from airlock.core.scan import scan_bytes  # noqa: E402

BANDIT_TESTS = "B301,B302,B403,B506,B614,B615"


def airlock_flags() -> dict[str, bool]:
    out = {}
    for name, source, *_ in CASES:
        result = scan_bytes(source.encode(), f"{name}.py")
        out[name] = any(f.severity > Severity.INFO for f in result.findings)
    return out


def bandit_flags() -> dict[str, bool] | None:
    bandit = shutil.which("bandit") or str(Path(sys.executable).parent / "bandit")
    if not Path(bandit).exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, *_ in CASES:
            Path(tmp, f"{name}.py").write_text(source)
        proc = subprocess.run([bandit, "-q", "-f", "json", "-t", BANDIT_TESTS, "-r", tmp], capture_output=True,
                              text=True, check=False)
        doc = json.loads(proc.stdout)
    hit = {Path(r["filename"]).stem for r in doc["results"]}
    return {name: name in hit for name, *_ in CASES}


def tob_flags() -> dict[str, bool | None]:
    return {name: None if tob is None else tob == "pos" for name, _s, _e, _t, _b, tob, _w in CASES}


def score(flags: dict[str, bool | None], only: set[str] | None = None) -> tuple[int, int, int, int]:
    """(caught, positives, false alarms, negatives) over the cases the tool has an opinion on."""
    caught = positives = alarms = negatives = 0
    for name, _s, _e, truth, *_ in CASES:
        flagged = flags.get(name)
        if flagged is None or (only is not None and name not in only):
            continue
        if truth:
            positives += 1
            caught += flagged
        else:
            negatives += 1
            alarms += flagged
    return caught, positives, alarms, negatives


def main() -> int:
    ours = airlock_flags()
    rows = [("Airlock", ours)]
    bandit = bandit_flags()
    if bandit is not None:
        rows.append(("Bandit " + BANDIT_TESTS, bandit))
    else:
        print("bandit not installed: pip install bandit for its column")
    tob = tob_flags()
    labelled = {name for name, value in tob.items() if value is not None}
    print(f"{len(CASES)} cases ({sum(c[3] for c in CASES)} true, {sum(not c[3] for c in CASES)} not)")
    for label, flags in rows:
        caught, pos, alarms, neg = score(flags)
        print(f"{label:<32} caught {caught}/{pos}   false alarms {alarms}/{neg}")
    print(f"on the {len(labelled)} cases Trail of Bits' test files label:")
    for label, flags in [("Airlock", ours), ("Trail of Bits (documented)", tob)]:
        caught, pos, alarms, neg = score(flags, labelled)
        print(f"{label:<32} caught {caught}/{pos}   false alarms {alarms}/{neg}")
    if bandit is not None:
        in_scope = {name for name, _s, _e, _t, b, _tob, _w in CASES if b is not None}
        print(f"on the {len(in_scope)} cases inside Bandit's rules (its docs label them):")
        for label, flags in [("Airlock", ours), ("Bandit", bandit)]:
            caught, pos, alarms, neg = score(flags, in_scope)
            print(f"{label:<32} caught {caught}/{pos}   false alarms {alarms}/{neg}")
        missed = [name for name, *_r in CASES if bandit[name] and not ours[name] and _r[2]]
        print("true cases Bandit catches and Airlock misses:", missed or "none")
        print("Bandit's false alarms:", [name for name, *_r in CASES if bandit[name] and not _r[2]])
    missed_tob = [name for name, *_r in CASES if tob[name] and not ours[name] and _r[2]]
    print("true cases Trail of Bits catches and Airlock misses:", missed_tob or "none")
    print("Trail of Bits' false alarms:", [name for name, *_r in CASES if tob[name] and not _r[2]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
