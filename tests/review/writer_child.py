"""A separate process writing decisions (tests/review/test_concurrency.py starts several at once).

    python writer_child.py loop DB START_AT WORKER COUNT   COUNT transactions of one decision each,
                                                          all workers starting at the same moment
    python writer_child.py hang DB ROWS                   one transaction of ROWS decisions, then
                                                          "inside" on stdout and sleep: killed there
"""

from __future__ import annotations

import sys
import time

from airlock.core.review.queries import open_store


def row(worker: int, index: int) -> dict[str, object]:
    return {"sha256": f"{worker:02d}{index:062d}", "size": index, "file_name": f"w{worker}-{index}.bin",
            "path": f"/w{worker}/{index}.bin", "format": "pickle", "verdict": "none", "decision": "approve",
            "accepted_critical": False, "findings_digest": "0" * 64, "findings": [], "policy_digest": "1" * 64,
            "reviewer": f"worker {worker}", "note": "concurrency test", "decided_at": "2025-01-01T00:00:00Z",
            "airlock_version": "test"}


def loop(url: str, start_at: float, worker: int, count: int) -> None:
    store = open_store(url)
    time.sleep(max(0.0, start_at - time.time()))
    for index in range(count):
        store.record([row(worker, index)])
    store.close()
    print("done", flush=True)


def hang(url: str, rows: int) -> None:
    from airlock.core.review.queries import insert_decisions

    store = open_store(url)
    assert store.engine is not None
    with store.engine.begin() as conn:
        insert_decisions(conn, [row(99, i) for i in range(rows)])
        print("inside", flush=True)
        time.sleep(600)  # SIGKILLed here, the transaction open


if __name__ == "__main__":
    if sys.argv[1] == "loop":
        loop(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        hang(sys.argv[2], int(sys.argv[3]))
