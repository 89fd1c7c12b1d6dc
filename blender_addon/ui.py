"""The sidebar panel (3D Viewport > N panel > Hi3DGen)."""

import textwrap
from typing import Any

import bpy

from . import generation, install_ui, sources, weights_ops
from .preferences import PACKAGE

RELIEF_PARAMS = ("resolution", "depth", "detail", "detail_mode", "thickness", "faces")
HI3DGEN_PARAMS = ("preset", "ss_steps", "ss_guidance", "slat_steps", "slat_guidance", "extraction", "decimate_faces",
                  "remove_floaters", "memory")
SWITCHES = ("align", "refine", "texture")
"Shown only when the backend's engine declares them (a backend from before them has none)."


def _wrapped(layout: Any, text: str, icon: str = "NONE", width: int = 40) -> None:
    for n, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if n == 0 else "BLANK1")


def _engine_params(engine: str) -> tuple[str, ...]:
    """The panel's parameters the chosen engine declares (known ones when no handshake happened yet)."""
    hello = generation.last_hello()
    declared = next((e for e in (hello.engines if hello else []) if e.get("name") == engine), None)
    offered = HI3DGEN_PARAMS if engine == "hi3dgen" else RELIEF_PARAMS
    if declared is None:
        return offered
    names = {p.get("name") for p in declared.get("params", [])}
    return tuple(n for n in RELIEF_PARAMS + HI3DGEN_PARAMS if n in names)


def _switches(engine: str) -> tuple[str, ...]:
    """The switches (align, refine, texture) the chosen engine declares in the handshake (none before it)."""
    declared = _engine(engine)
    names = {p.get("name") for p in declared.get("params", [])} if declared is not None else set()
    return tuple(n for n in SWITCHES if n in names)


def _engine(name: str) -> dict[str, Any] | None:
    """The handshake's entry for engine ``name`` (None before the first handshake)."""
    hello = generation.last_hello()
    return next((e for e in (hello.engines if hello else []) if e.get("name") == name), None)


class HI3DGEN_PT_main(bpy.types.Panel):
    bl_idname = "HI3DGEN_PT_main"
    bl_label = "Hi3DGen"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Hi3DGen"

    def draw(self, context: Any) -> None:
        layout = self.layout
        if layout is None:
            return
        props = context.window_manager.hi3dgen
        problem = generation.config_problem(context)
        if problem:
            box = layout.box()
            _wrapped(box, problem, icon="ERROR")
            show = box.operator("preferences.addon_show", text="Open Preferences", icon="PREFERENCES")
            if show is not None:
                show.module = PACKAGE
        install_ui.draw_panel(layout, context, bool(problem))
        self._draw_source(layout, context, props)
        col = layout.column(align=True)
        col.prop(props, "engine")
        col.prop(props, "seed")
        for name in _engine_params(props.engine):
            col.prop(props, name)
            if name == "preset" and props.preset != "official":
                col.label(text="Steps and guidance left at their defaults follow the preset", icon="INFO")
        switches = _switches(props.engine)
        if switches:
            row = layout.row(align=True)
            for name in switches:
                row.prop(props, name, toggle=True)
        weights_ops.draw_panel(layout, _engine(props.engine))
        col = layout.column(align=True)
        col.prop(props, "shading")
        col.prop(props, "with_material")
        row = col.row()
        row.active = bool(props.with_material)
        row.prop(props, "with_color")
        col.prop(props, "view_camera")
        self._draw_run(layout, props)

    def _draw_source(self, layout: Any, context: Any, props: Any) -> None:
        layout.prop(props, "source", expand=True)
        if props.source == "FILE":
            layout.prop(props, "image_path", text="")
        elif props.source == "IMAGE":
            layout.template_ID(props, "image", open="image.open")
        else:
            empty = sources.reference_empty(context)
            text = f"{empty.name} ({empty.data.name})" if empty is not None else "No active reference image"
            layout.label(text=text, icon="IMAGE_REFERENCE" if empty is not None else "ERROR")
            self._draw_views(layout, context, props)
        layout.prop(props, "mask_path", icon="MOD_MASK")

    def _draw_views(self, layout: Any, context: Any, props: Any) -> None:
        """With several reference empties selected: the multi-view switch and how many views it sends."""
        from .multiview import selected_reference_empties

        count = len(selected_reference_empties(context))
        if count < 2:
            return
        layout.prop(props, "use_selected_views")
        if props.use_selected_views:
            layout.label(text=f"{count} views, the active empty first", icon="RENDERLAYERS")

    def _draw_run(self, layout: Any, props: Any) -> None:
        run = generation.active()
        if run is not None and not run.job.finished:
            row = layout.row(align=True)
            row.progress(factor=run.job.fraction, type="BAR", text=run.job.status_text())
            row.operator("hi3dgen.cancel", text="", icon="CANCEL")
        else:
            layout.operator("hi3dgen.generate", icon="MESH_MONKEY")
        error = generation.last_error()
        if error is not None:
            box = layout.box()
            _wrapped(box, error.message, icon="CANCEL" if error.code == "cancelled" else "ERROR")
            if error.hint:
                _wrapped(box, error.hint, icon="INFO")
            if error.log or error.traceback:
                box.prop(props, "show_log", text="Backend log (also in the system console)")
                if props.show_log:
                    for line in (error.traceback or error.log).splitlines()[-12:]:
                        box.label(text=line[:120])
        elif generation.last_result():
            warning = generation.last_warning()
            layout.label(text=generation.last_result(), icon="ERROR" if warning else "CHECKMARK")
            if warning:
                _wrapped(layout.box(), f"Warning: {warning}", icon="ERROR")


class HI3DGEN_PT_backend(bpy.types.Panel):
    bl_idname = "HI3DGEN_PT_backend"
    bl_label = "Backend"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Hi3DGen"
    bl_parent_id = "HI3DGEN_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: Any) -> None:
        layout = self.layout
        if layout is None:
            return
        proc = generation.running_backend()
        hello = generation.last_hello()
        if proc is None:
            layout.label(text="Not running (starts with the first generation)", icon="RADIOBUT_OFF")
        else:
            layout.label(text=f"Running, pid {proc.proc.pid}", icon="RADIOBUT_ON")
        if hello is not None:
            devices = ", ".join(hello.devices) or "-"
            layout.label(text=f"Devices: {devices}; torch {hello.torch_version or '-'}")
            for engine in hello.engines:
                ready = bool(engine.get("available"))
                label = engine.get("label") or engine.get("name")
                _wrapped(layout, f"{label}: {generation.engine_state(engine)}",
                         icon="CHECKMARK" if ready else "ERROR")
        row = layout.row(align=True)
        row.operator("hi3dgen.check_backend", icon="PLUGIN")
        row.operator("hi3dgen.stop_backend", text="Stop", icon="CANCEL")


classes = (HI3DGEN_PT_main, HI3DGEN_PT_backend)
