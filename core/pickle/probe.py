"""Is this a pickle? Scores for sniffers, from the first opcodes or a short symbolic run.

Apart from `opcodes` because the short run needs the machine, and the machine reads opcodes:
with the probe here, `opcodes` stays a leaf and the two no longer import each other.
"""

from __future__ import annotations

from typing import Any

from airlock.core.limits import Limits
from airlock.core.pickle.machine import Machine
from airlock.core.pickle.opcodes import HIGHEST_PROTOCOL, OPCODES, PROTO, PickleTruncated


def looks_like_pickle(head: bytes) -> int:
    """Score 0-100 for "these bytes start a pickle", from the first opcodes alone."""
    if len(head) >= 2 and head[0] == PROTO and 2 <= head[1] <= HIGHEST_PROTOCOL:
        return 90
    if len(head) >= 2 and head[0] == PROTO and head[1] <= 0x0F:
        return 60  # an unknown protocol: loaders refuse it, the machine reports it as malformed
    return probe(head, 0, len(head), len(head))


# Opcodes that build something. GLOBAL is left out: text whose lines start with "c" reads as a
# run of GLOBALs, and importing without calling does nothing a reviewer must see.
_STRUCTURAL = frozenset({"INST", "REDUCE", "BUILD", "DICT", "LIST", "TUPLE", "MARK", "EMPTY_DICT",
                         "EMPTY_LIST", "SETITEM", "APPEND", "PERSID", "BINPERSID", "STACK_GLOBAL",
                         "EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "SETITEMS", "APPENDS"})
PROBE_OPCODES = 4096


def probe(buf: Any, start: int, end: int, size: int) -> int:
    """Score a protocol 0/1 stream (no PROTO header) by running it on the symbolic machine.

    Opcodes alone say little (much text decodes as a few opcodes); the machine's stack and memo
    rules are the real loader's, so a stream that runs without a loader error is a pickle to
    `pickle.load`, and one that breaks after importing or calling something still acted. `end` may
    stop short of `size` (a window): running out of bytes there is not truncation.
    """
    if start >= end:
        return 0
    machine = Machine(buf, limits=Limits(max_opcodes=PROBE_OPCODES, max_pickles_per_stream=1))
    run = machine.run_one(start, end)
    seen = len(run.op_offsets)
    if run.complete:
        return 70 if seen > 1 else 20
    error = run.error
    window_cut = isinstance(error, PickleTruncated) and end < size
    if seen >= PROBE_OPCODES or (window_cut and seen >= 2):
        return 40  # every opcode so far ran like the loader's: a pickle, possibly a long one
    if (run.calls or run.events) and seen >= 2:
        return 45  # broken, but only after a call or a dangerous name: the loader ran up to there
    codes = {buf[o] for o in run.op_offsets}
    if isinstance(error, PickleTruncated) and seen >= 2 and any(OPCODES[c][0] in _STRUCTURAL for c in codes):
        return 40
    return 0
