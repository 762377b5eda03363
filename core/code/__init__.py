"""Reading Python source and Jupyter notebooks for calls that load models unsafely.

The code is parsed with `ast.parse` (a syntax tree, never a code object), walked in order with
names resolved through imports, aliases and constants, and each risky call becomes an `Issue`
with its position. Nothing here imports, compiles or runs the code it reads.

    files.py    a .py file read: decoded, parsed, checked, findings placed
    notebooks.py  a notebook read: cells, magics, one module, findings placed in the raw .ipynb
    reader.py   bytes → text (PEP 263), `ast.parse` (the only caller)
    magics.py   IPython `%`/`!` lines of notebook cells, blanked so the rest parses
    nbjson.py   a notebook's JSON read with the position of every source string
    values.py   what a name or an expression is known to be (Ref, Const, Param, Obj...)
    walker.py   the ordered walk: scopes, bindings, call sites handed to the checks
    checks/     one small function per check, Bandit-style, each with a rule id
    rules.py    the rule ids (PY001...) and their severities
    report.py   issues → tree nodes and findings with file/cell/line/column
"""

from __future__ import annotations

MAX_SOURCE_BYTES = 4 * 1024 * 1024  # per file (or notebook): the largest real modules are a few hundred KiB

# Node kinds of code trees (plain strings, like airlock.core.tree's).
CODE = "code"  # a Python module's source, or a notebook cell's: attrs["text"] holds it for the view
CELL = "cell"  # a notebook cell
IMPORT = "import"
SYNTAX_ERROR = "syntax error"
