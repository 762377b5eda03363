#!/usr/bin/env bash
# Build the one-folder desktop app: packaging/dist/airlock/airlock (run it, or install it with
# packaging/linux/install.sh). Uses the current Python, which needs Airlock's dependencies and
# PyInstaller:  pip install -e '.[packaging]'
#
#   packaging/build.sh            build from the checkout this script is in
#   PYTHON=python3.11 packaging/build.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
# Output folders (tests build into a scratch folder): the spec reads AIRLOCK_BUILD_DIR too.
BUILD="${AIRLOCK_BUILD_DIR:-$HERE/build}"
DIST="${AIRLOCK_DIST_DIR:-$HERE/dist}"
export AIRLOCK_BUILD_DIR="$BUILD"

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    echo "build.sh: PyInstaller is missing: pip install -e '.[packaging]'" >&2
    exit 2
fi

rm -rf "$BUILD/icons" "$DIST/airlock"
QT_QPA_PLATFORM=offscreen "$PYTHON" "$HERE/make_icons.py" "$BUILD/icons" >/dev/null
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$BUILD/work" "$HERE/airlock.spec"

APP="$DIST/airlock"
# Licences and the desktop files next to the binary, where people (and install.sh) look.
ln -sfn _internal/licenses "$APP/licenses"
mkdir -p "$APP/share"
cp "$HERE/linux/airlock.desktop" "$HERE/linux/airlock-mime.xml" "$HERE/linux/install.sh" "$APP/share/"
cp "$HERE/../resources/icons/airlock.svg" "$APP/share/airlock.svg"
cp -r "$BUILD/icons/hicolor" "$APP/share/"

echo "built $APP/airlock ($(du -sh "$APP" | cut -f1))"
