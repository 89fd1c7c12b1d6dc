"""Scripting as a render farm does it, in fresh Blender (bpy) processes: a headless install of the built
zip into a user folder, then ``api.generate`` from a path, a packed or file-backed image datablock and a
reference-image empty (laid over its picture), with clear errors for other objects; a path gets a view camera,
and the engine switches (align, refine, texture) go only to an engine that declares them.

Each step runs in its own subprocess with ``BLENDER_USER_RESOURCES`` set to a temporary user folder, so the
install is persisted the way a farm's is, and this pytest process's own Blender session is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.blender.blender_session import write_png

REPO = Path(__file__).resolve().parents[2]
BACKEND_PYTHON = Path(os.environ.get("HI3DGEN_TEST_BACKEND_PYTHON", REPO / ".venv" / "bin" / "python"))

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")

INSTALL = """
import bpy
result = bpy.ops.extensions.package_install_files(repo="user_default", filepath={zip!r}, enable_on_install=True)
assert result == {{"FINISHED"}}, result
bpy.ops.wm.save_userpref()
"""

GENERATE = """
import importlib, json, os
import bpy
bpy.ops.wm.read_userpref()  # the bpy module starts with factory settings; blender -b reads them itself
hi3dgen = importlib.import_module("bl_ext.user_default.hi3dgen")
out = {{"enabled": "bl_ext.user_default.hi3dgen" in bpy.context.preferences.addons}}
bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)

def faces(obj):
    return len(obj.data.polygons)

first = hi3dgen.api.generate({png!r}, resolution=24, align=True, refine=False, texture=True)
out["path"] = faces(first)
camera = bpy.data.objects[first["hi3dgen_view"]]
out["view"] = [camera.type, camera.data.type, list(camera["hi3dgen_resolution"]), bpy.context.scene.camera.name]
try:
    hi3dgen.api.generate({png!r}, resolution=24, align="yes")
except hi3dgen.api.GenerationError as exc:
    out["bad_switch"] = [exc.code, str(exc)]
image = bpy.data.images.load({png!r})
out["file_backed"] = faces(hi3dgen.api.generate(image, resolution=24))
packed = bpy.data.images.load({other!r})
packed.pack()
os.remove({other!r})  # only the packed bytes are left
out["packed"] = faces(hi3dgen.api.generate(packed, resolution=24))
empty = bpy.data.objects.new("Ref", None)
empty.empty_display_type = "IMAGE"
empty.data = image
empty.location = (5.0, 0.0, 0.0)
bpy.context.scene.collection.objects.link(empty)
obj = hi3dgen.api.generate(empty, resolution=24)
out["empty_location"] = list(obj.location)
local = [empty.matrix_world.inverted() @ obj.matrix_world @ v.co for v in obj.data.vertices]
out["empty_extent"] = [min(p.x for p in local), max(p.x for p in local), min(p.y for p in local),
                       max(p.y for p in local), min(p.z for p in local)]
plain = bpy.data.objects.new("Plain", None)
for name, bad in (("plain", plain), ("number", 7)):
    try:
        hi3dgen.api.generate(bad)
    except hi3dgen.api.GenerationError as exc:
        out[name] = [exc.code, str(exc)]
print("RESULT " + json.dumps(out))
"""


def _blender(script: str, user: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user), "HI3DGEN_PYTHON": str(BACKEND_PYTHON)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_headless_install_then_generate_from_paths_images_and_empties(tmp_path):
    sys.path.insert(0, str(REPO))
    import build_addon

    zip_path = build_addon.build(tmp_path / "dist")
    user = tmp_path / "user"
    _blender(INSTALL.format(zip=str(zip_path)), user)
    assert (user / "extensions" / "user_default" / "hi3dgen" / "backend" / "__main__.py").is_file()
    assert (user / "config" / "userpref.blend").is_file()
    png, other = write_png(tmp_path / "disc.png"), write_png(tmp_path / "packed.png", size=64)
    done = _blender(GENERATE.format(png=str(png), other=str(other)), user)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["enabled"]
    assert out["path"] > 0 and out["file_backed"] == out["path"] and out["packed"] > 0
    assert out["view"] == ["CAMERA", "ORTHO", [96, 96], "Camera"]  # the relief's view; the startup camera kept
    assert out["bad_switch"][0] == "bad_input" and "align" in out["bad_switch"][1]
    assert abs(out["empty_location"][0] - 5.0) < 0.5  # over the empty, not at the cursor
    x0, x1, y0, y1, z0 = out["empty_extent"]  # the disc (radius 0.4 of the picture) over the picture
    assert max(abs(x0 + 0.4), abs(x1 - 0.4), abs(y0 + 0.4), abs(y1 - 0.4)) < 0.03, out["empty_extent"]
    assert z0 > -1e-3  # in front of the picture
    assert out["plain"][0] == "bad_input" and "reference-image empty" in out["plain"][1]
    assert out["number"][0] == "bad_input" and "int" in out["number"][1]
