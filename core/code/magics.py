"""IPython syntax in notebook cells, blanked line by line so that the Python around it parses.

A cell is first parsed as it is; only when that fails are its magic lines rewritten, keeping every
line where it was (positions found in the rewritten text are positions in the cell):
- `!cmd`, `%magic args`, `x = !cmd`, `obj?` become `pass` at the same indentation;
- `%time stmt`, `%timeit [-n N] stmt`, `%prun stmt` keep `stmt` (it runs), shifted left: the shift
  of each line is returned so columns can be mapped back;
- a `%%cell` magic on the first line: the Python ones (`%%time`, `%%capture`, `%%writefile x.py`...)
  blank that line and keep the body; the others (`%%bash`, `%%html`...) mean the cell is not Python.
"""

from __future__ import annotations

import re

# Cell magics whose body is Python that runs (or, for %%writefile *.py, is written to be imported).
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "python", "python3", "debug"})
# Cell magics whose body is shown or written, never run (markup, a file written to disk that is not
# Python). Any other cell magic (%%bash, %%script, %%javascript...) runs its body.
INERT_CELL_MAGICS = frozenset({"markdown", "html", "latex", "svg", "writefile", "capture_output"})
# Line magics whose argument is a Python statement that runs.
CODE_LINE_MAGICS = frozenset({"time", "timeit", "prun", "debug"})
_OPTIONS_WITH_VALUE = frozenset({"-n", "-r", "-p", "-o", "-s", "-T", "-D", "-l"})

_MAGIC_LINE = re.compile(r"^([ \t]*)(?:[!%]|\?\??)")
_ASSIGN_MAGIC = re.compile(r"^([ \t]*)[\w.\[\], ()*]+?[ \t]*=[ \t]*[!%]")
_HELP = re.compile(r"^([ \t]*)[\w.\[\]()]+\?\??[ \t]*$")
_LINE_MAGIC = re.compile(r"^([ \t]*)%([A-Za-z_]\w*)[ \t]*(.*)$")


class CellText:
    """A cell's text as given to the parser, the column shift of each rewritten line (1-based
    line → characters removed at its start), and why the cell is not Python, if it is not
    (`inert`: that other thing runs nothing here, e.g. %%markdown or %%writefile notes.txt)."""

    __slots__ = ("inert", "not_python", "shifts", "text")

    def __init__(self, text: str, shifts: dict[int, int] | None = None, not_python: str | None = None,
                 inert: bool = False) -> None:
        self.text = text
        self.shifts = shifts or {}
        self.not_python = not_python
        self.inert = inert


def cell_magic(text: str) -> tuple[str, str] | None:
    """(name, arguments) of a `%%name args` first line, or None."""
    first = text.split("\n", 1)[0]
    match = re.match(r"^%%([A-Za-z_]\w*)[ \t]*(.*)$", first.rstrip("\r"))
    return (match.group(1), match.group(2)) if match else None


def rewrite(text: str) -> CellText:
    """The cell with IPython-only lines blanked (see the module docstring)."""
    lines = text.split("\n")
    magic = cell_magic(text)
    if magic is not None:
        name, args = magic
        target = args.split()[-1] if args.split() else ""
        python_file = name == "writefile" and target.endswith((".py", ".pyw"))
        if name not in PYTHON_CELL_MAGICS and not python_file:
            inert = name in INERT_CELL_MAGICS
            what = "text that runs nothing" if inert else "code Airlock does not read (it runs)"
            return CellText(text, not_python=f"the cell magic %%{name} makes this cell {what}", inert=inert)
        lines[0] = ""
    shifts: dict[int, int] = {}
    continued = False
    for i, line in enumerate(lines):
        if continued:  # a magic's backslash continuation lines belong to the magic
            continued = line.rstrip("\r").endswith("\\")
            lines[i] = ""
            continue
        if not (_MAGIC_LINE.match(line) or _ASSIGN_MAGIC.match(line) or _HELP.match(line)):
            continue
        stripped = line.rstrip("\r")
        indent = stripped[: len(stripped) - len(stripped.lstrip(" \t"))]
        code = _code_of_line_magic(stripped)
        if code is not None:
            lines[i] = indent + code
            shifts[i + 1] = len(stripped) - len(indent) - len(code)
        else:
            lines[i] = indent + "pass"
            continued = line.rstrip("\r").endswith("\\")
    return CellText("\n".join(lines), shifts)


def _code_of_line_magic(line: str) -> str | None:
    """The Python statement a `%time`-like line magic runs, or None for any other line."""
    match = _LINE_MAGIC.match(line)
    if match is None or match.group(2) not in CODE_LINE_MAGICS:
        return None
    rest = match.group(3)
    words = rest.split(" ")
    skip = 0
    while skip < len(words) and words[skip].startswith("-"):
        skip += 2 if words[skip] in _OPTIONS_WITH_VALUE else 1
    code = " ".join(words[skip:]).lstrip()
    # Keep the statement's characters exactly as they are in the line (its tail).
    return line[len(line) - len(code) :] if code else None
