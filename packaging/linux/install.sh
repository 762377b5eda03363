#!/usr/bin/env bash
# Install Airlock for the current user: the app, a menu entry, its icon and the model file types,
# so that a file manager offers "Open with Airlock" for .safetensors .gguf .onnx .pt .pth .ckpt
# .bin .pkl .npy .npz .joblib .h5 .keras. Nothing is written outside $XDG_DATA_HOME (~/.local/share)
# and ~/.local/bin; no root needed.
#
#   packaging/linux/install.sh                 install the bundle built by packaging/build.sh
#   packaging/linux/install.sh --bundle DIR    install another built bundle (the folder holding `airlock`)
#   packaging/linux/install.sh --pip           no bundle: use the `airlock` command pip installed
#   packaging/linux/install.sh --uninstall     remove everything this script installed
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
BIN="${AIRLOCK_BIN_DIR:-$HOME/.local/bin}"
APP_DIR="$DATA/airlock/app"
# Types that only Airlock registers: it becomes their default application. The system's HDF5 types
# (.h5) only get Airlock as one more choice in "Open with"; a plain .bin is not claimed at all.
OWN_TYPES="application/x-safetensors application/x-gguf application/x-onnx application/x-pytorch
application/x-python-pickle application/x-npy application/x-npz application/x-joblib application/x-keras"

# This script ships in two places: packaging/linux/ in a checkout, and share/ inside a built bundle.
if [[ -x "$HERE/../airlock" && -d "$HERE/../_internal" ]]; then
    BUNDLE="$(cd "$HERE/.." && pwd)"
    SHARE="$HERE"
else
    BUNDLE="$(cd "$HERE/../.." && pwd)/packaging/dist/airlock"
    SHARE="$BUNDLE/share"
fi
MODE=bundle

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) BUNDLE="$(cd "$2" && pwd)"; SHARE="$BUNDLE/share"; shift 2 ;;
        --pip) MODE=pip; shift ;;
        --uninstall) MODE=uninstall; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

have() { command -v "$1" >/dev/null 2>&1; }

refresh() {
    if have update-mime-database; then update-mime-database "$DATA/mime" >/dev/null; fi
    if have update-desktop-database; then update-desktop-database -q "$DATA/applications" || true; fi
    if have gtk-update-icon-cache && [[ -f "$DATA/icons/hicolor/index.theme" ]]; then
        gtk-update-icon-cache -q -t -f "$DATA/icons/hicolor" || true
    fi
}

if [[ "$MODE" == uninstall ]]; then
    rm -rf "$APP_DIR"
    rmdir "$DATA/airlock" 2>/dev/null || true
    if [[ -L "$BIN/airlock" ]]; then rm -f "$BIN/airlock"; fi
    rm -f "$DATA/applications/airlock.desktop" "$DATA/mime/packages/airlock-mime.xml"
    rm -f "$DATA/icons/hicolor/scalable/apps/airlock.svg" "$DATA"/icons/hicolor/*/apps/airlock.png
    refresh
    echo "Airlock uninstalled from $DATA"
    exit 0
fi

if [[ "$MODE" == pip ]]; then
    EXEC="$(command -v airlock || true)"
    if [[ -z "$EXEC" ]]; then
        echo "install.sh: no \`airlock\` command on PATH; pip install . first" >&2
        exit 2
    fi
    SHARE="$HERE"
    SVG="$HERE/../../resources/icons/airlock.svg"
    PNGS=""
else
    if [[ ! -x "$BUNDLE/airlock" ]]; then
        echo "install.sh: no built app at $BUNDLE; run packaging/build.sh first (or use --pip)" >&2
        exit 2
    fi
    mkdir -p "$DATA/airlock"
    rm -rf "$APP_DIR.new"
    cp -a "$BUNDLE" "$APP_DIR.new"  # copied, so the checkout can go; replaced in one step
    rm -rf "$APP_DIR"
    mv "$APP_DIR.new" "$APP_DIR"
    EXEC="$APP_DIR/airlock"
    mkdir -p "$BIN"
    ln -sfn "$EXEC" "$BIN/airlock"
    SVG="$SHARE/airlock.svg"
    PNGS="$SHARE/hicolor"
fi

# The menu entry runs the absolute path: ~/.local/bin is not on every desktop session's PATH.
mkdir -p "$DATA/applications"
sed -e "s|^Exec=.*|Exec=\"$EXEC\" %F|" -e "s|^TryExec=.*|TryExec=$EXEC|" \
    "$SHARE/airlock.desktop" > "$DATA/applications/airlock.desktop"
chmod 644 "$DATA/applications/airlock.desktop"

mkdir -p "$DATA/mime/packages" "$DATA/icons/hicolor/scalable/apps"
cp "$SHARE/airlock-mime.xml" "$DATA/mime/packages/airlock-mime.xml"
cp "$SVG" "$DATA/icons/hicolor/scalable/apps/airlock.svg"
if [[ -n "$PNGS" && -d "$PNGS" ]]; then
    for png in "$PNGS"/*/apps/airlock.png; do
        size="$(basename "$(dirname "$(dirname "$png")")")"
        mkdir -p "$DATA/icons/hicolor/$size/apps"
        cp "$png" "$DATA/icons/hicolor/$size/apps/airlock.png"
    done
fi
refresh

if have xdg-mime; then
    # shellcheck disable=SC2086
    xdg-mime default airlock.desktop $OWN_TYPES || true
fi

echo "Airlock installed: $EXEC"
echo "  menu entry  $DATA/applications/airlock.desktop"
echo "  file types  $DATA/mime/packages/airlock-mime.xml"
if ! have update-mime-database; then
    echo "  (update-mime-database not found: install shared-mime-info so the file types take effect)"
fi
