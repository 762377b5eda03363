"""The `airlock` command. `scan` and `convert` stay headless and never import Qt."""

from __future__ import annotations

import sys

HEADLESS_COMMANDS = {"scan", "convert", "hash", "verify", "lock", "--version", "-h", "--help"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in HEADLESS_COMMANDS:
        from airlock.core.cli import main as cli_main

        return cli_main(argv)
    return gui_main(argv)


def gui_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from airlock.gui.app import main as app_main  # Qt is imported only here

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
