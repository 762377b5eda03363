"""ScanContext: the budgets shared by every nesting level of one file."""

import pytest

from airlock.core.context import ScanContext
from airlock.core.errors import LimitExceeded
from airlock.core.limits import Limits


def test_decompressed_bytes_are_counted_across_calls_and_refused_past_the_budget():
    ctx = ScanContext(Limits(max_decompressed_bytes=100))
    ctx.charge_decompressed(60, "outer gzip")
    ctx.charge_decompressed(40, "inner member")  # exactly the budget is still allowed
    assert ctx.decompressed_bytes == 100
    with pytest.raises(LimitExceeded, match="inner bz2 expands past 100 bytes"):
        ctx.charge_decompressed(1, "inner bz2")
