"""Which lines of a module are worth searching for calls.

Most lines of a large code base cannot matter to the checks. A line is *hot* when it mentions one of
TRIGGERS, or a name the code bound to a function some check looks at (`from pickle import loads as L`
makes every line that says `L` hot). The walker searches expressions for calls on hot statements
only; every statement still binds its names. Plain substrings found with `str.find` are several
times faster than one regex alternation over the same words (measured on transformers' sources).
"""

from __future__ import annotations

import ast
import itertools
import re

# A superset of what the checks look for: "load" covers torch.load, joblib.load, load_model,
# load_dataset, torch.hub.load, load_state_dict_from_url...; "pickle" covers Unpickler and read_pickle;
# "pretrained" covers from_pretrained and its revision=/use_safetensors= options. Every word costs a
# scan of the text, so words already covered by another (getattr(pickle, "loads")) are left out.
TRIGGERS = (
    "load", "pickle", "shelve", "unsafe_deserialization", "PackageImporter", "trust_remote_code",
    "pretrained", "download", "pipeline", "SentenceTransformer", "CrossEncoder", "create_model", "http",
    "verify", "urlretrieve", "urlopen", "requests", "wget", "import_module", "__import__",
    "_create_unverified_context", "CA_BUNDLE", "_object", "msgpack", "dumps", "BytesIO",
    "global ",  # a function that rebinds a module name is walked even when nothing else in it is hot
)
# Modules whose risky functions have names no trigger covers (`m.patch()` after `import msgpack_numpy
# as m`, `r.get(url, verify=False)`...): a name bound to one of them makes its lines hot.
ALIASED_MODULES = frozenset({"msgpack", "msgpack_numpy", "jsonpickle", "shelve", "requests", "httpx",
                             "urllib3", "keras.utils", "ssl"})
# Where text can flow into code that runs. Only files that say one of these need their lines searched
# for them, and every assignment's value worked out (elsewhere a call's result off the hot lines is
# simply unknown).
SINKS = ("exec(", "eval(", "compile(", "run_path", "spec_from", "SourceFileLoader", "sys.path", "addsitedir",
         "load_library", "load_op_library")


def has_sink(text: str) -> bool:
    for sink in SINKS:
        at = text.find(sink)
        while at != -1:
            before = text[at - 1] if at else " "
            if not sink.endswith("(") or not (before == "." or before.isalnum() or before == "_"):
                return True  # exec(...) itself, not model.eval()
            at = text.find(sink, at + 1)
    return False


class HotLines:
    def __init__(self, text: str, sinks: bool = False) -> None:
        if "\r" in text:  # CPython counts \r\n and a lone \r as one line break each
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.text = text
        self.flags = bytearray(text.count("\n") + 2)  # flags[n] == 1: line n is hot
        self.words: set[str] = set()
        self.prefix: list[int] = []
        positions = []
        for word in TRIGGERS + SINKS if sinks else TRIGGERS:
            at = text.find(word)
            while at != -1:
                positions.append(at)
                at = text.find(word, at + len(word))
        self._mark(sorted(positions))

    def _mark(self, positions: list[int]) -> None:
        line, last, flags, text = 1, 0, self.flags, self.text
        for at in positions:
            line += text.count("\n", last, at)
            last = at
            flags[line] = 1
        self.prefix = list(itertools.accumulate(flags))  # prefix[n]: hot lines among 1..n

    def add_word(self, word: str) -> None:
        """Make every line that names `word` hot (an alias of a function a check looks at)."""
        if word not in self.words and not any(t in word for t in TRIGGERS):
            self.words.add(word)
            self._mark([m.start() for m in re.finditer(rf"\b{re.escape(word)}\b", self.text)])

    def hot(self, node: ast.expr | ast.stmt) -> bool:
        first, last = node.lineno, node.end_lineno or node.lineno
        prefix = self.prefix
        if last >= len(prefix):
            last = len(prefix) - 1
        return first <= last and prefix[last] != prefix[first - 1]
