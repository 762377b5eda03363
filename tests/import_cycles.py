"""Import cycles of airlock.core at run time, as JSON: `PYTHONPATH=.dev python tests/import_cycles.py`.

Groups of modules that reach each other through imports (Tarjan's strongly connected components of
grimp's graph, the one import-linter checks). Imports under TYPE_CHECKING are left out; imports
inside functions count. tests/test_import_layers.py compares the groups with the known ones.
"""

from __future__ import annotations

import json
import sys

import grimp


def cycles() -> list[set[str]]:
    """Strongly connected groups of airlock.core's import graph, as grimp (import-linter's engine) sees it."""
    graph = grimp.build_graph("airlock", cache_dir=None, exclude_type_checking_imports=True)
    modules = sorted(m for m in graph.modules if m.startswith("airlock.core"))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if not imported.startswith("airlock.core"):
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member.removeprefix("airlock.core."))
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in modules:
        if module not in index:
            visit(module)
    return groups


if __name__ == "__main__":
    json.dump(sorted(sorted(group) for group in cycles()), sys.stdout)
