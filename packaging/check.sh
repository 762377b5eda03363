#!/usr/bin/env bash
# End-to-end check of the desktop app, from a clean clone of this repository's HEAD:
# build the bundle, then run the FROZEN binary (never the source) on samples:
#   - `airlock demo --screenshot` renders a PNG of at least 1280x800
#   - `airlock scan` exits 1 on a hostile pickle and 0 on a benign one
#   - ONNX and HDF5 files parse (their parsers run in a child of the frozen binary)
#   - policy data, licences and icons are in the bundle; without the policy it refuses to scan
#   - a second `airlock FILE` hands its file to the running window
#   - install.sh installs the menu entry and file types into a scratch XDG_DATA_HOME
#
#   packaging/check.sh                  (about 3 minutes; needs: pip install -e '.[packaging]')
#   KEEP=1 packaging/check.sh           keep the scratch folder (the screenshot is in it)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/airlock-check.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; fi
    if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

FAILED=0
ok() { echo "  ok    $*"; }
bad() { echo "  FAIL  $*"; FAILED=1; }
step() { echo "== $*"; }

step "clone $REPO (HEAD $(git -C "$REPO" rev-parse --short HEAD)) into $WORK/src"
if [[ -n "$(git -C "$REPO" status --porcelain -- packaging core gui resources setup.py pyproject.toml)" ]]; then
    echo "  note  uncommitted changes in the checkout are not part of this check"
fi
git clone -q "$REPO" "$WORK/src"

step "build"
"$WORK/src/packaging/build.sh"
APP="$WORK/src/packaging/dist/airlock"
AIRLOCK="$APP/airlock"
[[ -x "$AIRLOCK" ]] || { bad "no binary at $AIRLOCK"; exit 1; }

# The frozen app must not see this checkout's sources or the user's settings.
export QT_QPA_PLATFORM=offscreen
export XDG_CONFIG_HOME="$WORK/config" XDG_RUNTIME_DIR="" TMPDIR="$WORK/tmp"
export AIRLOCK_INSTANCE="$WORK/tmp/instance.sock"
mkdir -p "$TMPDIR" "$WORK/samples"
unset PYTHONPATH
cd "$WORK"

step "bundle contents"
for f in policy/allowlist.json policy/denylist.json policy/torch_weights_only.json \
         licenses/THIRD_PARTY.md licenses/LGPL-NOTICE.txt icons/airlock.svg; do
    if [[ -s "$APP/_internal/airlock/resources/$f" ]]; then ok "airlock/resources/$f"; else bad "missing airlock/resources/$f"; fi
done
for f in LICENSE LGPL-3.0.txt GPL-3.0.txt THIRD_PARTY.md; do
    if [[ -s "$APP/licenses/$f" ]]; then ok "licenses/$f"; else bad "missing licenses/$f"; fi
done
for f in airlock.desktop airlock-mime.xml install.sh airlock.svg hicolor/256x256/apps/airlock.png; do
    if [[ -s "$APP/share/$f" ]]; then ok "share/$f"; else bad "missing share/$f"; fi
done
for d in matplotlib/mpl-data PySide6/Qt/plugins/platforms; do
    if [[ -d "$APP/_internal/$d" ]]; then ok "_internal/$d"; else bad "missing _internal/$d"; fi
done
if ls -d "$APP"/_internal/torch "$APP"/_internal/tests 2>/dev/null | grep -q .; then bad "torch or tests were bundled"; else ok "no torch, no tests"; fi
echo "  size  $(du -sh "$APP" | cut -f1)"
# Libraries the X11 plugin needs that were not on the build machine (so not bundled): the desktop
# that runs the app must have them (Wayland sessions do not use this plugin).
if command -v ldd > /dev/null; then
    missing="$(LD_LIBRARY_PATH="$APP/_internal" ldd "$APP/_internal/PySide6/Qt/plugins/platforms/libqxcb.so" 2>/dev/null \
               | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ' || true)"
    if [[ -n "$missing" ]]; then echo "  note  the X11 (xcb) plugin needs from the system: $missing"; fi
fi

step "samples (written by this Python, scanned by the frozen app)"
"$PYTHON" - "$WORK/samples" <<'EOF'
import os, struct, sys
out = sys.argv[1]
def write(name, data):
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(data)
# Opcode by opcode: os.system('echo pwned') at load time, and a plain dict of floats.
write("hostile.pkl", b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwnedq\x00\x85q\x01Rq\x02.")
write("benign.pkl", b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01w\x94]\x94(G?\xf0\x00\x00\x00\x00\x00\x00e\x8c\x01b\x94K\x02u.")
import numpy as np
np.save(os.path.join(out, "array.npy"), np.arange(12, dtype="<f4").reshape(3, 4))
import onnx
from onnx import TensorProto, helper
w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])
graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
onnx.save(helper.make_model(graph), os.path.join(out, "model.onnx"))
import h5py
with h5py.File(os.path.join(out, "weights.h5"), "w") as f:
    f.create_dataset("dense/kernel", data=np.ones((4, 2), dtype="f4"))
EOF
ok "$(ls "$WORK/samples" | tr '\n' ' ')"

step "airlock scan"
set +e
"$AIRLOCK" scan "$WORK/samples/hostile.pkl" > scan-hostile.txt 2>&1; code=$?
set -e
if [[ $code == 1 ]] && grep -q CRITICAL scan-hostile.txt; then ok "hostile pickle: exit 1, critical"; else bad "hostile pickle: exit $code"; cat scan-hostile.txt; fi
set +e
"$AIRLOCK" scan "$WORK/samples/benign.pkl" > scan-benign.txt 2>&1; code=$?
set -e
if [[ $code == 0 ]]; then ok "benign pickle: exit 0"; else bad "benign pickle: exit $code"; cat scan-benign.txt; fi
set +e
"$AIRLOCK" scan --format json "$WORK/samples/array.npy" "$WORK/samples/model.onnx" "$WORK/samples/weights.h5" > scan-formats.json 2> scan-formats.err; code=$?
set -e
if "$PYTHON" - scan-formats.json <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
files = doc["files"] if isinstance(doc, dict) else doc
ok = True
for f in files:
    name = f["path"].rsplit("/", 1)[-1]
    rules = sorted({x.get("rule") or x.get("rule_id") or x.get("id") for x in f.get("findings", [])})
    broken = [x for x in f.get("findings", []) if x.get("severity") in ("high", "critical")]
    print(f"  {'ok  ' if not broken else 'FAIL'}  {name}: format {f.get('format')}, rules {rules}")
    ok &= not broken
sys.exit(0 if ok and len(files) == 3 else 1)
EOF
then ok "npy, onnx (isolated child), h5 (isolated child) parsed, exit $code"; else bad "formats"; cat scan-formats.err; fi

step "missing policy: the frozen app refuses to scan"
cp -a "$APP" "$WORK/nopolicy"
rm "$WORK/nopolicy/_internal/airlock/resources/policy/allowlist.json"
set +e
"$WORK/nopolicy/airlock" scan "$WORK/samples/benign.pkl" > nopolicy.txt 2>&1; code=$?
set -e
if [[ $code == 2 ]] && grep -q "policy" nopolicy.txt; then ok "exit 2: $(head -c 100 nopolicy.txt)"; else bad "exit $code without the policy"; cat nopolicy.txt; fi
rm -rf "$WORK/nopolicy"

step "screenshot"
"$AIRLOCK" demo --screenshot "$WORK/demo.png" > screenshot.log 2>&1 || { bad "demo --screenshot failed"; cat screenshot.log; }
if "$PYTHON" - "$WORK/demo.png" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read(32)
assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
w, h = struct.unpack(">II", data[16:24])
print(f"  ok    {sys.argv[1]}: {w}x{h}")
sys.exit(0 if w >= 1280 and h >= 800 else 1)
EOF
then :; else bad "screenshot missing or smaller than 1280x800"; fi
if [[ "${KEEP:-0}" == 1 ]]; then cp "$WORK/demo.png" "$HERE/dist/check-demo.png" 2>/dev/null || true; fi

step "single instance: a second launch hands its file to the running window"
"$AIRLOCK" "$WORK/samples/benign.pkl" > first.log 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do [[ -S "$AIRLOCK_INSTANCE" ]] && break; sleep 0.2; done
set +e
timeout 30 "$AIRLOCK" "$WORK/samples/array.npy" > second.log 2>&1; code=$?
set -e
if [[ $code == 0 ]] && grep -q "already running" second.log; then ok "second launch exited 0 after handing over"; else bad "second launch: exit $code"; cat second.log; fi
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

step "install.sh into a scratch XDG_DATA_HOME"
export XDG_DATA_HOME="$WORK/data" AIRLOCK_BIN_DIR="$WORK/bin"
"$APP/share/install.sh" > install.log 2>&1 || { bad "install.sh failed"; cat install.log; }
DESKTOP="$XDG_DATA_HOME/applications/airlock.desktop"
EXEC_PATH="$(sed -n 's/^TryExec=//p' "$DESKTOP" 2>/dev/null || true)"
if [[ -x "$EXEC_PATH" ]] && "$EXEC_PATH" --version > /dev/null; then ok "menu entry runs $EXEC_PATH"; else bad "menu entry Exec"; fi
if command -v update-mime-database > /dev/null; then
    if grep -q "application/x-gguf:\*.gguf" "$XDG_DATA_HOME/mime/globs2" \
        && grep -q "application/x-safetensors:\*.safetensors" "$XDG_DATA_HOME/mime/globs2"; then
        ok "file types registered (mime/globs2)"
    else bad "file types not in $XDG_DATA_HOME/mime/globs2"; fi
fi
"$APP/share/install.sh" --uninstall > /dev/null
if [[ ! -e "$DESKTOP" && ! -e "$XDG_DATA_HOME/airlock" ]]; then ok "uninstall removes it"; else bad "uninstall left files"; fi

if [[ $FAILED == 0 ]]; then echo "check.sh: all checks passed"; else echo "check.sh: FAILED"; fi
exit $FAILED
