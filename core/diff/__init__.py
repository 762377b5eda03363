"""`airlock diff A B`: what changed between a reviewed model (A) and a candidate (B).

Both sides are scanned as `airlock scan` scans them (nothing is loaded or run); the diff then
compares the two trees: metadata keys, tensors (by name, then by the bytes of the ones left over:
renames), tensor values (hashed first, numeric statistics streamed in chunks for the ones that
differ), chat templates (a unified text diff), pickle imports and calls, ONNX operators and
initializers. Pure Python; never imports Qt.

    side.py     what one file holds, read from its scan tree
    values.py   hashing a tensor's byte span, and the streamed numeric comparison of two tensors
    compare.py  one pair of files; pairing the files of two folders
    render.py   the report document (JSON), its text, the exit code
    html.py     the HTML page (airlock.core.report.html's look and escaping)
    detail.py   one tensor's two histograms and difference statistics (the GUI's diff tab)
    cli.py      the `airlock diff` command and its exit codes
"""
