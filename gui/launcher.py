"""The `airlock` command. `scan` and `convert` stay headless and never import Qt."""

from __future__ import annotations

import sys

HEADLESS_COMMANDS = {"scan", "convert", "hash", "verify", "lock", "approve", "reject", "history", "--version",
                     "-h", "--help"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in HEADLESS_COMMANDS:
        from airlock.core.cli import main as cli_main

        return cli_main(argv)
    return gui_main(argv)


# The desktop app's own dependencies (module, distribution). `pip install .` has them; a slim
# command-line install (README, requirements-cli.txt) does not, and `airlock scan` needs none.
GUI_PACKAGES = (("PySide6", "PySide6-Essentials"), ("matplotlib", "matplotlib"), ("fickling", "fickling"))


def missing_gui_packages() -> list[str]:
    import importlib.util

    missing = []
    for module, distribution in GUI_PACKAGES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: blocked in sys.modules
            found = False
        if not found:
            missing.append(distribution)
    return missing


def gui_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    missing = missing_gui_packages()
    if missing:
        names = " ".join(missing)
        print(f"airlock: the desktop app needs {', '.join(missing)}, which this installation lacks "
              f"(a command-line install).\n"
              f"  install: pip install {names}   (or the whole app: pip install model-airlock)\n"
              f"  without them: airlock scan PATH..., airlock convert FILE (see airlock --help)",
              file=sys.stderr)
        return 2
    from airlock.gui.app import main as app_main  # Qt is imported only here

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
