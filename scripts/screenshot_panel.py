"""README pictures of the live panel: a real Blender window (under Xvfb) after a real generation, and the
first-run states (``HI3DGEN_SHOT_STATE``): ``offer`` (no backend set: the panel offers Install Backend),
``prefs`` (the preferences' Backend Environment and Download Weights boxes), ``installing`` (the
preferences during an install) and ``downloading`` (the panel's Download Weights bar). A real install cannot
run in Blender 3.4 (its Python is Debian's, not the 3.11 the pins are for), so the two progress states show
a prepared run state (stage, package, bytes) drawn by the add-on's own drawing code; 3.4 has no
``UILayout.progress`` (4.0+), so a read-only slider stands in for the bar there.

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
STATE = os.environ.get("HI3DGEN_SHOT_STATE", "generated")
BL_INFO = ('bl_info = {"name": "Hi3DGen", "author": "Hi3DGen for Blender", "version": (0, 1, 0), '
           '"blender": (3, 4, 0), "category": "3D View", "description": "Image to detailed mesh"}\n')


def install() -> None:
    """Copy the add-on (with its backend, as the zip bundles it) into the user add-on folder and enable it."""
    addons = Path(bpy.utils.user_resource("SCRIPTS")) / "addons"
    target = addons / "hi3dgen"
    shutil.rmtree(target, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "blender_addon", target, ignore=ignore)
    shutil.copytree(REPO / "backend", target / "backend", ignore=ignore)
    init = target / "__init__.py"
    future = "from __future__ import annotations\n"
    init.write_text(init.read_text().replace(future, future + BL_INFO, 1))  # 3.4 lists add-ons by bl_info
    if not hasattr(bpy.utils, "extension_path_user"):  # 4.2+: the add-on falls back to the config folder
        def no_extension_path(*args: object, **kw: object) -> str:
            raise ValueError("not an extension")
        bpy.utils.extension_path_user = no_extension_path
    sys.path.insert(0, str(addons))
    import hi3dgen
    import hi3dgen.ui as ui

    ui.HI3DGEN_PT_backend.bl_options = set()  # show the Backend sub-panel open in the picture
    entry = bpy.context.preferences.addons.new()  # what enabling does, without the legacy bl_info check
    entry.module = "hi3dgen"
    hi3dgen.register()
    if bpy.app.version < (3, 5, 0):
        _pre_35_mesh_calls(hi3dgen.mesh_builder)
    if not hasattr(bpy.app, "online_access"):
        _pre_42_online_access()


def _pre_42_online_access() -> None:
    """Blender 4.2 added Allow Online Access (``bpy.app.online_access``); 3.4 is taken as online."""
    import importlib

    class App:
        online_access = True

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(bpy.app, name)

    class Bpy:
        app = App()

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(bpy, name)

    for name in ("install_ui", "install_ops", "preferences", "weights_ops", "ui", "generation"):
        module = importlib.import_module(f"hi3dgen.{name}")
        if getattr(module, "bpy", None) is bpy:
            module.bpy = Bpy()


def _pre_35_mesh_calls(builder) -> None:  # noqa: ANN001 - the add-on's mesh_builder module
    """Debian's Blender (3.4) predates the generic attribute API the extension uses (4.2+): swap in the old
    per-element calls for this picture only."""
    import numpy as np

    def fill(mesh, verts, tris, topology=None) -> None:  # noqa: ANN001 - the builder's edges are ignored
        mesh.vertices.add(len(verts))
        mesh.vertices.foreach_set("co", verts.ravel())
        mesh.loops.add(tris.size)
        mesh.loops.foreach_set("vertex_index", tris.ravel())
        mesh.polygons.add(len(tris))
        mesh.polygons.foreach_set("loop_start", np.arange(0, tris.size, 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(tris), 3, dtype=np.int32))
        mesh.polygons.foreach_set("use_smooth", np.ones(len(tris), dtype=bool))
        mesh.update(calc_edges=True)

    def uvs(mesh, uv, tris) -> np.ndarray:  # noqa: ANN001
        corner_uvs = uv[tris.ravel()].ravel()
        mesh.uv_layers.new(name=builder.UV_NAME).data.foreach_set("uv", corner_uvs)
        return corner_uvs

    def shading(mesh, shading, normals, plain=None, corner_edge=None) -> None:  # noqa: ANN001
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


class _Bar:
    """A layout that draws ``progress`` (Blender 4.0+) as a read-only slider in 3.4; the rest passes on."""

    def __init__(self, layout) -> None:  # noqa: ANN001
        self._layout = layout

    def __getattr__(self, name: str):  # noqa: ANN204
        attr = getattr(self._layout, name)
        if name in ("row", "column", "box", "split"):
            return lambda *a, **kw: _Bar(attr(*a, **kw))
        return attr

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "") -> None:  # noqa: A002
        bpy.context.window_manager.hi3dgen_shot_bar = factor
        self._layout.prop(bpy.context.window_manager, "hi3dgen_shot_bar", text=text, slider=True)


def _pre_40_progress() -> None:
    import hi3dgen.install_ui as install_ui
    import hi3dgen.weights_ops as weights_ops

    bpy.types.WindowManager.hi3dgen_shot_bar = bpy.props.FloatProperty(subtype="FACTOR", min=0.0, max=1.0)
    for module, name in ((install_ui, "draw_progress"), (weights_ops, "draw_downloads")):
        real = getattr(module, name)
        setattr(module, name, lambda layout, *a, _real=real: _real(_Bar(layout), *a))


class _Installing:
    """A prepared install run, as ``installer.Installer`` reports one during the torch step."""

    def snapshot(self):  # noqa: ANN201
        from hi3dgen.installer import InstallState

        return InstallState(stage="torch", label="Installing torch 2.13.0 (cu128)", fraction=0.38,
                            detail="torch-2.13.0+cu128-cp311-cp311-manylinux_2_28_x86_64.whl: 1.2 GB of 2.9 GB")

    def cancel(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> None:
        pass


class _Downloading:
    """A prepared download run, as ``downloads.DownloadRun`` reports one mid-file."""

    finished = False

    def snapshot(self):  # noqa: ANN201
        from hi3dgen.downloads import Status

        return Status(done=1_310_000_000, total=6_300_000_000, rate=41_500_000, eta=120.0,
                      model="trellis-normal", file="ckpts/slat_flow_img_dit_L_64l8p2_fp16.safetensors")

    def cancel(self, grace: float = 0.0) -> None:
        pass


def prepare(state: str) -> None:
    """Set the add-on up as the state shows it: no backend, a prepared install run or download run."""
    import hi3dgen.install_ops as install_ops
    import hi3dgen.weights_ops as weights_ops

    if bpy.app.version < (4, 0, 0):
        _pre_40_progress()
    for obj in list(bpy.data.objects):  # no active object: the C-drawn Item tab goes, Hi3DGen's is the one left
        bpy.data.objects.remove(obj)
    prefs = bpy.context.preferences.addons["hi3dgen"].preferences
    if state in ("offer", "prefs", "installing"):
        os.environ.pop("HI3DGEN_PYTHON", None)
        prefs.backend_python = ""
    if state == "installing":
        install_ops._State.installer = _Installing()
    if state == "downloading":
        weights_ops._State.run = _Downloading()


def show_preferences() -> None:
    """The big 3D view becomes the Preferences editor on Add-ons, filtered to this add-on, expanded."""
    import addon_utils

    context = bpy.context
    window = context.window_manager.windows[0]
    area = max(window.screen.areas, key=lambda a: a.width * a.height)
    area.type = "PREFERENCES"
    context.preferences.active_section = "ADDONS"
    context.window_manager.addon_search = "Hi3DGen"
    for mod in addon_utils.modules(refresh=False):  # the list draws these (file-parsed) modules' bl_info
        if mod.__name__ == "hi3dgen":
            addon_utils.module_bl_info(mod)["show_expanded"] = True


def write_geometry() -> float:
    """Every half second: where the sidebar and the preferences are in the window (for the crop)."""
    window = bpy.context.window_manager.windows[0]
    rows = []
    for area in window.screen.areas:
        if area.type == "PREFERENCES":
            rows.append(("prefs", area.x, window.height - area.y - area.height, area.width, area.height))
        for region in area.regions if area.type == "VIEW_3D" else ():
            if region.type == "UI":
                rows.append(("sidebar", region.x, window.height - region.y - region.height, region.width,
                             region.height))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "geometry.txt").write_text("".join(f"{n} {x} {y} {w} {h}\n" for n, x, y, w, h in rows))
    return 0.5


def ready() -> None:
    if STATE in ("prefs", "installing"):
        show_preferences()
    for area in bpy.context.window_manager.windows[0].screen.areas:
        if area.type == "VIEW_3D":
            area.spaces.active.show_region_ui = True
    (OUT / "ready").write_text("ready")


def main() -> None:
    install()
    hide_other_tabs()
    if STATE == "generated":
        generate()
        bpy.app.timers.register(finish, first_interval=1.0)
        return
    prepare(STATE)
    bpy.app.timers.register(write_geometry, first_interval=0.5)
    bpy.app.timers.register(ready, first_interval=1.0)


main()
