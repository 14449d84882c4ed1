#!/usr/bin/env sh
# Adds distill-gui to the desktop's application menu (Linux, freedesktop.org menus) for this user.
# Run it after `pip install .`, from anywhere: it needs the `distill-gui` command on PATH.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
if ! command -v distill-gui >/dev/null 2>&1; then
    echo "error: the distill-gui command is not on PATH; install the app first (pip install .)" >&2
    exit 2
fi
mkdir -p "$data/applications" "$data/icons/hicolor/scalable/apps"
cp "$here/../distill_gui/resources/icon.svg" "$data/icons/hicolor/scalable/apps/distill-gui.svg"
# The menu entry runs the exact command pip installed, so a virtual environment needs no activation.
sed "s|^Exec=distill-gui$|Exec=$(command -v distill-gui)|" "$here/distill-gui.desktop" \
    > "$data/applications/distill-gui.desktop.tmp"
mv "$data/applications/distill-gui.desktop.tmp" "$data/applications/distill-gui.desktop"
echo "added: $data/applications/distill-gui.desktop"
