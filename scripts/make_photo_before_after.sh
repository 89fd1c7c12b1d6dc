#!/usr/bin/env bash
# The README's picture for a photo without alpha (issue #13), docs/images/relief_photo_before_after.png: the
# photo, the relief made with the OLD automatic mask (the pre-GrabCut border-flood estimate, frozen in
# bench/bench_segmentation.py, given to the current engine as the mask), the relief made by the current tree
# (default settings, automatic mask), same three-quarter camera and lighting.
#   scripts/make_photo_before_after.sh [IMAGE [OUT]]
# Needs .venv (backend) and .venv-blender (bpy); about a minute on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-tests/fixtures/segmentation/held_backdrop_monkey_2.png}
out=${2:-docs/images/relief_photo_before_after.png}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python scripts/relief_mesh_npz.py "$image" "$tmp/before.npz" --mask-from old >/dev/null
.venv/bin/python scripts/relief_mesh_npz.py "$image" "$tmp/after.npz" >/dev/null
.venv-blender/bin/python scripts/render_before_after.py "$tmp/before.npz" "$tmp/after.npz" --size 400 \
  --out "$tmp/views.png" >"$tmp/render.log" 2>&1 || { cat "$tmp/render.log"; exit 1; }
.venv/bin/python scripts/photo_before_after.py "$image" "$tmp/views.png" "$tmp/before.npz" "$tmp/after.npz" \
  --out "$out"
