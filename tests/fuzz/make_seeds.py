"""Write the fuzzers' seed corpora: every tests/corpus.py file, one folder per format Airlock
reads it as, plus an `all` folder for fuzz_scan.py.  Usage: python make_seeds.py OUT_DIR"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import corpus  # noqa: E402

from airlock.core.scan import scan_bytes  # noqa: E402


def main(out: Path) -> None:
    counts: dict[str, int] = {}
    for fixture in corpus.all_fixtures():
        result = scan_bytes(fixture.data, fixture.name.rsplit("/", 1)[-1])
        fmt = result.format
        result.close()
        name = hashlib.sha1(fixture.data).hexdigest()[:16]
        for folder in (fmt, "all"):
            (out / folder).mkdir(parents=True, exist_ok=True)
            (out / folder / name).write_bytes(fixture.data)
        counts[fmt] = counts.get(fmt, 0) + 1
    for fmt, n in sorted(counts.items()):
        print(f"{out / fmt}: {n} seeds")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
