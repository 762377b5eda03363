"""What a pickle would do, as Python: fickling's static decompiler output, shown as plain text.

fickling reads the opcodes into an AST symbolically; nothing is executed or imported. Its output
is for the reviewer's "what would this do"; Airlock's own machine decides what is risky.
"""

from __future__ import annotations

import re

from PySide6.QtWidgets import QWidget

from airlock.core.findings import Severity
from airlock.core.text import safe_text
from airlock.core.tree import CALL, GLOBAL, PICKLE, Node
from airlock.gui.details.text_view import StatusTextView
from airlock.gui.workers import FunctionWorker, pool

MAX_PICKLE_BYTES = 8 * 1024**2  # fickling builds Python objects per opcode: keep it to a few MB
MAX_OUTPUT_CHARS = 300_000


def decompile(data: bytes) -> str:
    """fickling's decompilation of one pickle stream (raises with a clear message on failure)."""
    import ast

    from fickling.fickle import Pickled  # LGPL: imported dynamically, only when this view is used

    note = ""
    try:
        pickled = Pickled.load(data)
    except Exception as exc:  # noqa: BLE001 - fickling raises several types on bad bytes
        # Keep what decodes before the error, as the loader would run that part.
        note = f"# fickling stopped at a decoding error: {safe_text(str(exc), 200)}\n"
        pickled = Pickled.load(data, fail_on_decode_error=False)
    text = ast.unparse(pickled.ast)
    if not text.strip():
        raise ValueError(note.strip("# \n") or "fickling produced no output for these bytes")
    text = note + text
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"\n# … output cut at {MAX_OUTPUT_CHARS:,} characters"
    return text


def pickle_ancestor(node: Node) -> Node | None:
    walk: Node | None = node
    while walk is not None:
        if walk.kind == PICKLE:
            return walk
        walk = walk.parent
    return None


def risky_names(pickle_node: Node) -> list[str]:
    """Names of the risky callables under this pickle node, to mark them in the decompiled text."""
    names: set[str] = set()
    stack = [pickle_node]
    budget = 20_000  # only risky branches are walked (severity rises to parents), lazy ones too
    while stack and budget > 0:
        node = stack.pop()
        budget -= 1
        if node.kind in (CALL, GLOBAL) and node.severity >= Severity.HIGH:
            dotted = str(node.attrs.get("callable") or node.label).split("(")[0]
            names.update(part for part in dotted.split(".")[-1:] if part.isidentifier())
        if node.severity >= Severity.HIGH and node.kind != CALL:
            stack.extend(node.children(0, budget))
    return sorted(names)


def marks_for(text: str, names: list[str]) -> list[tuple[int, int]]:
    if not names:
        return []
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b")
    return [(m.start(), m.end()) for m in pattern.finditer(text)][:500]


class DecompiledView(StatusTextView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Decompiled pickle", parent)
        self._token = 0
        self._names: list[str] = []
        self.worker: FunctionWorker | None = None
        self.show_message("Select a pickle node to see what it would do.")

    def show_message(self, text: str) -> None:
        self._token += 1
        self.status.setText(text)
        self.text.show_text("")

    def show_pickle(self, data: bytes | None, why_not: str = "", names: list[str] | None = None) -> None:
        self._token += 1
        if data is None:
            self.status.setText(f"Decompiled view not available: {why_not}")
            self.text.show_text("")
            return
        if len(data) > MAX_PICKLE_BYTES:
            self.status.setText(f"This pickle is {len(data):,} bytes; the decompiled view is limited to "
                                f"{MAX_PICKLE_BYTES:,} bytes. The tree and findings cover all of it.")
            self.text.show_text("")
            return
        self._names = names or []
        self.status.setText(f"Decompiling {len(data):,} bytes with fickling (static; nothing runs)…")
        self.text.show_text("")
        token = self._token
        worker = FunctionWorker(decompile, data, plain=True)
        worker.signals.returned.connect(lambda text, t=token: self._done(t, text))
        worker.signals.errored.connect(lambda msg, t=token: self._failed(t, msg))
        self.worker = worker
        pool().start(worker)

    def _done(self, token: int, text: object) -> None:
        if token != self._token:
            return  # the selection moved on
        body = str(text)
        marks = marks_for(body, self._names)
        self.status.setText("fickling's decompilation — what loading this pickle would do. Never executed."
                            + (f" Marked: {', '.join(self._names)}." if marks else ""))
        self.text.show_text(body, marks)

    def _failed(self, token: int, message: str) -> None:
        if token == self._token:
            self.status.setText(f"fickling could not decompile this pickle ({safe_text(message, 300)}). "
                                "Airlock's own reading is in the tree and the findings.")
            self.text.show_text("")
