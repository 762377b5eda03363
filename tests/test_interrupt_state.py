"""core/interrupt.py in-process: handlers installed and restored, deferred sections, ignored signals."""

import os
import signal
import sys

import pytest

from airlock.core import interrupt

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals sent with os.kill")


@pytest.fixture(autouse=True)
def _stop_signals_not_ignored():
    """These tests send themselves SIGINT. A test run started in the background by a shell without
    job control starts with SIGINT ignored, and handle_signals() rightly leaves an ignored signal
    alone (nohup): give the tests Python's own SIGINT handler, as an interactive run has."""
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_signal_raises_interrupted_with_its_exit_code():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(interrupt.Interrupted) as caught, interrupt.handle_signals():
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this thread before kill() returns
        pytest.fail("not interrupted")
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143
    assert str(caught.value) == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before  # restored
    assert interrupt.pending() is None


def test_a_deferred_section_is_not_cut_and_raises_after():
    done = []
    with pytest.raises(interrupt.Interrupted), interrupt.handle_signals(), interrupt.deferred():
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(1000):
            pass
        done.append("finished")
        assert interrupt.pending() == signal.SIGHUP and interrupt.received() == 1
    assert done == ["finished"]


def test_a_second_signal_raises_even_in_a_deferred_section():
    with pytest.raises(interrupt.Interrupted) as caught, interrupt.handle_signals(), \
            interrupt.deferred(raise_after=False):
        os.kill(os.getpid(), signal.SIGHUP)
        assert interrupt.pending() == signal.SIGHUP
        os.kill(os.getpid(), signal.SIGINT)
        pytest.fail("the second signal did not raise")
    assert caught.value.signum == signal.SIGINT and interrupt.pending() is None


def test_wakeup_fd_becomes_readable():
    import select

    with interrupt.handle_signals(), interrupt.deferred(raise_after=False):
        fd = interrupt.wakeup_fd()
        assert fd is not None and select.select([fd], [], [], 0)[0] == []
        os.kill(os.getpid(), signal.SIGTERM)
        assert select.select([fd], [], [], 10)[0] == [fd]
        interrupt.drain_wakeup()
        assert select.select([fd], [], [], 0)[0] == []


def test_an_ignored_signal_stays_ignored():
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupt.handle_signals():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            assert interrupt.pending() is None
    finally:
        signal.signal(signal.SIGHUP, old)
