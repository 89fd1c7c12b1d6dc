"""README picture of the live panel: a real Blender window (under Xvfb) after a real generation.

The ``bpy`` module from PyPI draws no user interface, so this script runs inside a windowed Blender started
by ``scripts/screenshot_panel.sh`` (Debian's ``blender`` package and ``xvfb``; not needed for anything else).
It enables the add-on from this checkout as a legacy add-on, generates from the bundled example through the
real operator and backend, opens the sidebar on the Hi3DGen tab and writes ``<out>/ready`` when the window
is ready to be captured.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import bpy

REPO = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("HI3DGEN_SHOT_DIR", "/tmp/hi3dgen-shot"))
OTHER_TABS = ("Item", "Tool", "View")


def install() -> None:
    """Copy the add-on (with its backend, as the zip bundles it) into the user add-on folder and enable it."""
    addons = Path(bpy.utils.user_resource("SCRIPTS")) / "addons"
    target = addons / "hi3dgen"
    shutil.rmtree(target, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "blender_addon", target, ignore=ignore)
    shutil.copytree(REPO / "backend", target / "backend", ignore=ignore)
    sys.path.insert(0, str(addons))
    import hi3dgen
    import hi3dgen.ui as ui

    ui.HI3DGEN_PT_backend.bl_options = set()  # show the Backend sub-panel open in the picture
    entry = bpy.context.preferences.addons.new()  # what enabling does, without the legacy bl_info check
    entry.module = "hi3dgen"
    hi3dgen.register()
    if bpy.app.version < (3, 5, 0):
        _pre_35_mesh_calls(hi3dgen.mesh_builder)


def _pre_35_mesh_calls(builder) -> None:  # noqa: ANN001 - the add-on's mesh_builder module
    """Debian's Blender (3.4) predates the generic attribute API the extension uses (4.2+): swap in the old
    per-element calls for this picture only."""
    import numpy as np

    def fill(mesh, verts, tris) -> None:  # noqa: ANN001
        mesh.vertices.add(len(verts))
        mesh.vertices.foreach_set("co", verts.ravel())
        mesh.loops.add(tris.size)
        mesh.loops.foreach_set("vertex_index", tris.ravel())
        mesh.polygons.add(len(tris))
        mesh.polygons.foreach_set("loop_start", np.arange(0, tris.size, 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(tris), 3, dtype=np.int32))
        mesh.polygons.foreach_set("use_smooth", np.ones(len(tris), dtype=bool))
        mesh.update(calc_edges=True)

    def uvs(mesh, uv, tris) -> None:  # noqa: ANN001
        mesh.uv_layers.new(name=builder.UV_NAME).data.foreach_set("uv", uv[tris.ravel()].ravel())

    def shading(mesh, shading, normals) -> None:  # noqa: ANN001
        mesh.use_auto_smooth = True  # 3.4's form of smooth-by-angle (the AUTO default)

    builder._fill_topology, builder._set_uvs, builder._set_shading = fill, uvs, shading


def hide_other_tabs() -> None:
    """Only the Hi3DGen tab in the sidebar (Blender has no API to pick the active tab)."""
    for name in dir(bpy.types):
        cls = getattr(bpy.types, name)
        if getattr(cls, "bl_region_type", "") == "UI" and getattr(cls, "bl_space_type", "") == "VIEW_3D" \
                and getattr(cls, "bl_category", "") in OTHER_TABS:
            bpy.utils.unregister_class(cls)


def generate() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    props = bpy.context.window_manager.hi3dgen
    props.image_path = str(REPO / "examples" / "suzanne.png")
    props.with_material = True
    bpy.ops.hi3dgen.check_backend()
    result = bpy.ops.hi3dgen.generate("EXEC_DEFAULT", image_path=props.image_path, with_material=True)
    print(f"[screenshot] generate: {result}")


def frame_view() -> None:
    window = bpy.context.window_manager.windows[0]
    for area in window.screen.areas:
        if area.type != "VIEW_3D":
            continue
        space = area.spaces.active
        space.show_region_ui = True
        space.shading.type = "MATERIAL"
        space.overlay.show_floor = True
        region = next(r for r in area.regions if r.type == "WINDOW")
        with bpy.context.temp_override(window=window, screen=window.screen, area=area, region=region):
            bpy.ops.view3d.view_axis(type="FRONT")
            bpy.ops.view3d.view_selected()
            bpy.ops.view3d.view_orbit(angle=0.45, type="ORBITLEFT")
            bpy.ops.view3d.view_orbit(angle=0.25, type="ORBITUP")
            bpy.ops.view3d.zoom(delta=-1)


def finish() -> None:
    try:
        frame_view()
    except Exception as exc:  # the picture is still worth taking; say why it is not framed
        print(f"[screenshot] could not frame the view: {exc!r}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ready").write_text("ready")
    # returning None: the timer does not repeat


def main() -> None:
    install()
    hide_other_tabs()
    generate()
    bpy.app.timers.register(finish, first_interval=1.0)


main()
