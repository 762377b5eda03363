"""The frozen app's entry point: `airlock [FILE...]`, `airlock scan ...`, and the isolated parser child.

A frozen app has no `python -c`: core/isolate.py starts `sys.executable --airlock-isolated-child`
for the ONNX and HDF5 parsers, and this script answers it before anything else (no Qt import).
"""

import multiprocessing
import sys


def main() -> int:
    multiprocessing.freeze_support()  # `airlock scan --jobs N` where fork is unavailable
    if len(sys.argv) > 1 and sys.argv[1] == "--airlock-isolated-child":
        from airlock.core.isolate import child_main

        child_main()
        return 0
    from airlock.gui.launcher import main as launcher_main

    return launcher_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
