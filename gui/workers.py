"""Background work on QThreadPool: scanning, statistics, decompiling and conversion.

Shaped like superqt's WorkerBase: a QRunnable whose signals live on a separate QObject
(started / progress / returned / errored / finished). A worker only calls core functions; it
never touches widgets. Results cross to the GUI thread through queued signal connections.
"""

from __future__ import annotations

import functools
import gc
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from airlock.core.errors import AirlockError, Cancelled


class WorkerSignals(QObject):
    started = Signal()
    progress = Signal(float, str)  # fraction 0..1, message
    returned = Signal(object)
    errored = Signal(str)  # one line for the user; the traceback goes to the log
    finished = Signal()


class WorkerBase(QRunnable):
    """Runs `work(progress, cancelled)` off the GUI thread and reports through `signals`."""

    def __init__(self) -> None:
        super().__init__()
        self.signals = WorkerSignals()
        self._cancel = threading.Event()
        self.done = threading.Event()  # set once run() has returned or raised
        self.setAutoDelete(False)  # the Python object owns it; Qt must not delete it under us

    # Subclasses implement this; it runs in a pool thread.
    def work(self, progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> Any:
        raise NotImplementedError

    def cancel(self) -> None:
        self._cancel.set()

    def release(self) -> None:
        """Called once the worker's signals have all been delivered. PySide's thread pool keeps every
        runnable it ran, so a finished worker must hold nothing: its inputs are dropped (subclasses) and
        its signals object deleted, which also frees the slots (and the views they captured)."""
        self.signals.deleteLater()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(self) -> None:
        signals = self.signals
        signals.started.emit()
        def progress(fraction: float, message: str = "") -> None:
            signals.progress.emit(float(fraction), str(message))

        try:
            result = self.work(progress, self._cancel.is_set)
        except Cancelled:
            signals.returned.emit(None)  # asked for: no error, and no traceback on the terminal
        except AirlockError as exc:  # an expected failure, said in one line (a refusal, a bad input)
            signals.errored.emit(f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a worker failure is shown to the user, never a crash
            traceback.print_exc()
            signals.errored.emit(f"{type(exc).__name__}: {exc}")
        else:
            signals.returned.emit(result)
            del result
        finally:
            self.done.set()
            signals.finished.emit()


class FunctionWorker(WorkerBase):
    """Calls `fn(*args, progress=..., cancelled=..., **kwargs)`, or without them when `plain`."""

    def __init__(self, fn: Callable[..., Any], *args: Any, plain: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self._fn, self._args, self._kwargs, self._plain = fn, args, kwargs, plain

    def work(self, progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> Any:
        if self._plain:
            return self._fn(*self._args, **self._kwargs)
        return self._fn(*self._args, progress=progress, cancelled=cancelled, **self._kwargs)

    def release(self) -> None:
        super().release()
        self._fn, self._args, self._kwargs = _nothing, (), {}


def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


class _GcPause:
    """No cyclic garbage collection while scans run, and the new trees frozen afterwards.

    A scan builds millions of long-lived objects; each full collection then walks all of them
    with the GIL held (0.1-0.3 s on a 150k-entry pickle), which freezes the window as surely as
    scanning in the GUI thread would. Refcounting still frees acyclic garbage meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._paused = False

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0 and gc.isenabled():
                gc.disable()
                self._paused = True
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._paused:
                gc.freeze()  # the trees live as long as their tabs: later collections skip them
                gc.enable()
                self._paused = False


GC_PAUSE = _GcPause()


def release_frozen() -> None:
    """After a tab closes: let the collector see frozen objects again, so its tree can be freed."""
    gc.unfreeze()


class ScanWorker(WorkerBase):
    """Scans one file through the public API (airlock.core.api.scan_file, as the CLI does); returns
    the report's tree, a ScanResult (or None if cancelled). With a policy (airlock.toml), its marks
    are carried over to the tree's findings and kept in `marks` (airlock.gui.policy_marks); without
    one given, the policy file is looked up from the current folder upward, as `airlock scan` does."""

    def __init__(self, path: str, policy: Any = None) -> None:
        super().__init__()
        self.path = path
        self.policy = policy
        self.marks: dict[int, Any] = {}
        self.entry: dict[str, Any] | None = None  # the report entry, as `airlock scan` writes it
        self.severity_was: dict[int, Any] = {}  # id(Node) → its severity before the policy (the tree says so)
        self.policy_note = ""  # which policy file applies, or why it does not
        self.sha256: tuple[str, int] | None = None  # (digest, size) when the policy needed the hash

    def work(self, progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> Any:
        from airlock.core.api import scan_file
        from airlock.core.errors import Cancelled

        if self.policy is None:
            from airlock.gui.policy_marks import load_policy

            self.policy, self.policy_note = load_policy([self.path])
        with GC_PAUSE:
            try:
                report = scan_file(self.path, keep_tree=True, policy=self.policy, progress=progress,
                                   cancelled=cancelled)
            except Cancelled:
                return None
            if report.result is not None:
                from airlock.gui.policy_marks import carry_marks, settle_severities

                entry = self.entry = report.to_dict()
                self.marks = carry_marks(entry, report.result.findings)
                self.severity_was = settle_severities(report.result.findings, self.marks)
                if entry.get("sha256") is not None:
                    self.sha256 = (str(entry["sha256"]), int(entry["size"]))
            return report.result


WARMED_UP_IN: list[int] = []  # the thread that ran warm_up_plotting (tests: never the GUI's)


# matplotlib imported by two threads at once (the warm-up below, and the GUI thread's first histogram)
# can fail: Python hands the second thread a half-initialised module ("cannot import name 'Transform'
# from partially initialized module 'matplotlib.transforms'"). Both import it under this lock.
_PLOTTING_IMPORT = threading.Lock()


def import_plotting() -> None:
    """Import matplotlib's Qt canvas, waiting for the warm-up if it is importing it right now."""
    with _PLOTTING_IMPORT:
        import matplotlib.backends.backend_qtagg  # noqa: F401 - the import is the point


def warm_up_plotting() -> None:
    """Import matplotlib's Qt canvas and draw one throw-away figure off screen (fonts, Agg), so the first
    histogram does not stall the window for a second. Runs in a pool thread."""
    import_plotting()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1))
    figure.add_subplot().bar([0, 1], [1, 2])
    FigureCanvasAgg(figure).draw()  # type: ignore[no-untyped-call]  # loads the fonts; no widget: any thread
    WARMED_UP_IN.append(threading.get_ident())


# Workers share the GIL with the GUI thread. Painting a new tab calls into Python (item models,
# paint overrides) dozens of times, and each call waits for the GIL until the worker drops it: up to
# Python's switch interval, 5 ms by default. A scan starting beside a first paint froze the window
# for 0.3-0.4 s that way (benchmarks/gui_scan_stall.py); at 0.5 ms the wait is short enough. A
# worker running alone is not slowed: the GIL is only handed over when another thread asks for it.
GUI_SWITCH_INTERVAL_S = 0.0005


class Pool:
    """The application's pool, plus the set of live workers so that they are not collected early."""

    def __init__(self, pool: QThreadPool | None = None) -> None:
        self.pool = pool or QThreadPool.globalInstance()
        self._live: set[WorkerBase] = set()
        sys.setswitchinterval(min(sys.getswitchinterval(), GUI_SWITCH_INTERVAL_S))

    def start(self, worker: WorkerBase) -> WorkerBase:
        self._live.add(worker)
        # Connected last, so it runs after every other slot of `finished` (queued signals keep their order).
        worker.signals.finished.connect(functools.partial(self._finished, worker))
        self.pool.start(worker)
        return worker

    def _finished(self, worker: WorkerBase) -> None:
        self._live.discard(worker)
        worker.release()

    @property
    def busy(self) -> bool:
        return bool(self._live)

    def cancel_all(self) -> None:
        for worker in list(self._live):
            worker.cancel()

    def wait(self, msecs: int = 30_000) -> bool:
        return self.pool.waitForDone(msecs)


_POOL: Pool | None = None


def pool() -> Pool:
    global _POOL
    if _POOL is None:
        _POOL = Pool()
    return _POOL
