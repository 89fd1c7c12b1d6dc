#!/usr/bin/env bash
# Capture the README pictures: a windowed Blender under Xvfb with the Hi3DGen panel after a generation
# (docs/images/panel.png), and the first-run states (docs/images/first_run_*.png: the panel offering Install
# Backend, the preferences before and during an install, the panel's Download Weights bar; the two progress
# states are prepared run states, see scripts/screenshot_panel.py). `scripts/screenshot_panel.sh offer prefs`
# takes only those states.
# Needs Debian's blender, xvfb and imagemagick (apt-get install blender xvfb imagemagick xdotool python3-numpy) and .venv (make venvs).
# Only for the README pictures; the tests and the demo use the bpy module.
set -euo pipefail
cd "$(dirname "$0")/.."
states=("$@")
[ ${#states[@]} -gt 0 ] || states=(generated offer prefs installing downloading)
shot=$(mktemp -d)
export HI3DGEN_PYTHON="$PWD/.venv/bin/python" HI3DGEN_SHOT_DIR="$shot" DISPLAY=:97
Xvfb :97 -screen 0 1600x1000x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill "$xvfb" "${blender:-}" 2>/dev/null || true' EXIT
sleep 2
blender -b --factory-startup --python-expr \
  "import bpy; bpy.ops.wm.save_as_mainfile(filepath='$shot/start.blend')" >/dev/null 2>&1  # a file: no splash

geometry() {  # the crop of region $1 (sidebar, prefs) as WxH+X+Y, from what the script wrote last
  awk -v n="$1" '$1 == n { printf "%dx%d+%d+%d", $4, $5, $2, $3; exit }' "$shot/geometry.txt"
}

capture() {  # $1: state; writes its picture
  local state=$1 out
  rm -f "$shot/ready" "$shot/geometry.txt"
  HI3DGEN_SHOT_STATE="$state" blender --factory-startup "$shot/start.blend" --python scripts/screenshot_panel.py \
    >"$shot/blender-$state.log" 2>&1 &
  blender=$!
  for _ in $(seq 120); do [ -f "$shot/ready" ] && break; sleep 1; done
  [ -f "$shot/ready" ] || { tail -40 "$shot/blender-$state.log"; exit 1; }
  sleep 8  # shaders compile
  if [ "$state" != prefs ] && [ "$state" != installing ]; then
    # the sidebar's "Hi3DGen" tab (Blender has no API to pick a tab): just below "Item" on the tab strip
    xdotool mousemove 700 500 sleep 1 mousemove 1308 157 sleep 0.5 click 1
    sleep 1
    # widen the sidebar: drag its left edge
    xdotool mousemove 1100 500 mousedown 1 sleep 0.3 mousemove 1000 500 sleep 0.3 mousemove 860 500 sleep 0.3 mouseup 1
  fi
  xdotool mousemove 5 995
  sleep 2
  import -window root "$shot/full-$state.png"
  case $state in
    generated) convert "$shot/full-$state.png" -crop 1600x940+0+0 -resize 1200x docs/images/panel.png
               out=docs/images/panel.png ;;
    prefs|installing) out=docs/images/first_run_$state.png
               # the add-on's entry down to its Download Weights box
               convert "$shot/full-$state.png" -crop "$(geometry prefs)" +repage -resize '900x' \
                 -crop 900x385+0+60 +repage -colors 128 "$out" ;;
    *)         out=docs/images/first_run_$state.png
               convert "$shot/full-$state.png" -crop "$(geometry sidebar)" +repage -crop 100%x70%+0+0 +repage \
                 -colors 128 "$out" ;;
  esac
  kill "$blender" 2>/dev/null || true
  wait "$blender" 2>/dev/null || true
  blender=
  echo "wrote $out"
}

for state in "${states[@]}"; do capture "$state"; done
