#!/usr/bin/env bash
# Capture docs/images/panel.png: a windowed Blender under Xvfb with the Hi3DGen panel after a generation.
# Needs Debian's blender, xvfb and imagemagick (apt-get install blender xvfb imagemagick xdotool python3-numpy) and .venv (make venvs).
# Only for the README picture; the tests and the demo use the bpy module.
set -euo pipefail
cd "$(dirname "$0")/.."
shot=$(mktemp -d)
export HI3DGEN_PYTHON="$PWD/.venv/bin/python" HI3DGEN_SHOT_DIR="$shot" DISPLAY=:97
Xvfb :97 -screen 0 1600x1000x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill "$xvfb" "${blender:-}" 2>/dev/null || true' EXIT
sleep 2
blender -b --factory-startup --python-expr \
  "import bpy; bpy.ops.wm.save_as_mainfile(filepath='$shot/start.blend')" >/dev/null 2>&1  # a file: no splash
blender --factory-startup "$shot/start.blend" --python scripts/screenshot_panel.py >"$shot/blender.log" 2>&1 &
blender=$!
for _ in $(seq 120); do [ -f "$shot/ready" ] && break; sleep 1; done
[ -f "$shot/ready" ] || { tail -40 "$shot/blender.log"; exit 1; }
sleep 8  # shaders compile
# the sidebar's "Hi3DGen" tab (Blender has no API to pick a tab): just below "Item" on the tab strip
xdotool mousemove 1308 157 click 1
sleep 1
# widen the sidebar: drag its left edge
xdotool mousemove 1100 500 mousedown 1 sleep 0.3 mousemove 1000 500 sleep 0.3 mousemove 860 500 sleep 0.3 mouseup 1
xdotool mousemove 500 900
sleep 2
import -window root "$shot/full.png"
convert "$shot/full.png" -crop 1600x940+0+0 -resize 1200x docs/images/panel.png
echo "wrote docs/images/panel.png"
