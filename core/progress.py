"""The progress display of `airlock scan` on a terminal: files done/total, bytes, current file, ETA.

Drawn on stderr with tqdm, only when stderr is a terminal and `--quiet` is not given, and only for
scans of more than a few files or of large files (a one-file scan stays one line of report).
tqdm is imported when the display first draws, so pipes and CI logs pay nothing for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from airlock.core.text import safe_text

if TYPE_CHECKING:
    from airlock.core.api import Report

SHOW_FROM_FILES = 4  # more than a few files
SHOW_FROM_BYTES = 256 * 1024 * 1024  # or this much to read


def for_terminal(stream: IO[str], *, quiet: bool = False) -> TerminalProgress | None:
    """A progress display on `stream` if it is a terminal and the user did not ask for quiet."""
    if quiet:
        return None
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):  # a replaced or closed stream
        return None
    return TerminalProgress(stream)


class TerminalProgress:
    """A `ScanObserver` (airlock.core.api) that draws one status line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._bar: Any = None  # a tqdm, once shown
        self.files = 0           # found by the walk so far
        self.total_bytes = 0
        self.complete = False    # the walk is over: the totals are final
        self.done = 0
        self.current = ""

    # ScanObserver

    def found(self, files: int, nbytes: int, complete: bool) -> None:
        self.files, self.total_bytes, self.complete = files, nbytes, complete
        if self._bar is None and (files >= SHOW_FROM_FILES or nbytes >= SHOW_FROM_BYTES):
            self._show()
        elif self._bar is not None:
            self._bar.total = nbytes or None
            self._describe()

    def started(self, path: str, size: int) -> None:
        self.current = path
        if self._bar is None and size >= SHOW_FROM_BYTES:
            self._show()
        if self._bar is not None:
            self._describe()

    def finished(self, report: Report, size: int) -> None:
        self.done += 1
        if self._bar is not None:
            self._describe()
            self._bar.update(size)  # redraws at most every mininterval

    # Drawing

    def _show(self) -> None:
        from tqdm import tqdm  # only here: a scan whose stderr is not a terminal never imports it

        try:
            columns, lines = os.get_terminal_size(self._stream.fileno())
        except (OSError, ValueError):
            columns = lines = 0
        # Follow the terminal's size. A terminal that reports none (0x0: a pty nobody sized, as `docker
        # run -t` and CI runners often give) would draw nothing, even with a width: tqdm reads 0 rows as
        # "no room for this bar". Then a fixed size.
        width: dict[str, Any] = ({"dynamic_ncols": True} if columns > 0 and lines > 0 else
                                 {"ncols": columns or 100, "nrows": lines or 24})
        desc, name = self._texts()
        self._bar = tqdm(total=self.total_bytes or None, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=desc, postfix=name, file=self._stream, leave=False, mininterval=0.1, **width,
                         bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt}B "
                                    "[{elapsed}<{remaining}]{postfix}")

    def _texts(self) -> tuple[str, str]:
        more = "" if self.complete else "+"
        name = safe_text(os.path.basename(self.current) or self.current, 60) if self.current else ""
        return f"{self.done:,}/{self.files:,}{more} files", name

    def _describe(self) -> None:
        desc, name = self._texts()
        self._bar.set_description_str(desc, refresh=False)
        self._bar.set_postfix_str(name, refresh=False)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Clear the line while something else writes to the same terminal."""
        if self._bar is None:
            yield
            return
        self._bar.clear()
        try:
            yield
        finally:
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()  # leave=False: the line is erased, the report follows cleanly
            self._bar = None
