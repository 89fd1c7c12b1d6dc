"""Thin operators: build settings from properties, call the generation functions, report their messages."""

from typing import Any, Literal

import bpy

from . import generation, mesh_builder, sources
from .client import BackendUnavailable
from .job import JobFailed
from .settings import BuildOptions, GenerateSettings, checked_params, image_name_from_path, parse_params_json

OpResult = set[Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]]


def _settings_from(op: Any, context: Any) -> tuple[GenerateSettings, BuildOptions, mesh_builder.Placement]:
    """The request described by the operator's own properties where set, else by the panel."""
    props = context.window_manager.hi3dgen
    if op.image_path:
        picture = sources.picture_from_file(op.image_path)
    elif _wants_views(op, props):
        picture = sources.Picture("views", b"")  # add_selected_views below fills in the first view
    else:
        picture = sources.picture_from_context(context, props)
    is_set = op.properties.is_property_set
    explicit = parse_params_json(op.params_json)
    options = BuildOptions(shading=op.shading if is_set("shading") else props.shading,
                           with_material=op.with_material if is_set("with_material") else props.with_material,
                           with_color=op.with_color if is_set("with_color") else props.with_color,
                           view_camera=op.view_camera if is_set("view_camera") else props.view_camera)
    settings = GenerateSettings(
        image_name=picture.name or image_name_from_path(op.image_path), image_bytes=picture.data,
        engine=op.engine if is_set("engine") else (props.engine or "relief"),
        seed=op.seed if is_set("seed") else props.seed,
        params=explicit if explicit is not None else checked_params(props.param_values()),
        strict_params=explicit is not None,
        device=_device(context),
        want_normal_map=True,
        want_textures=options.with_material,
        mask_bytes=sources.mask_from_file(op.mask_path if is_set("mask_path") else props.mask_path),
        optional_params=props.switch_values(),
    )
    if not op.image_path and _wants_views(op, props):
        from .multiview import add_selected_views

        picture = add_selected_views(settings, context)
    return settings, options, sources.placement_for(context.scene, picture)


def _wants_views(op: Any, props: Any) -> bool:
    """Multi-view from the selected empties: the operator's ``selected_views`` where set, else the panel's
    switch (shown with the Reference source while several reference empties are selected)."""
    if op.properties.is_property_set("selected_views"):
        return bool(op.selected_views)
    return props.source == "EMPTY" and bool(props.use_selected_views)


def _device(context: Any) -> str:
    from .preferences import get_preferences

    prefs = get_preferences(context)
    return str(prefs.device) if prefs is not None else "auto"


class HI3DGEN_OT_generate(bpy.types.Operator):
    """Turn the image into a mesh with the Hi3DGen backend (Esc cancels)"""

    bl_idname = "hi3dgen.generate"
    bl_label = "Generate Mesh"
    bl_options = {"UNDO"}  # no redo panel: re-running a generation from it would block the UI

    image_path: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Image Path", subtype="FILE_PATH", options={"SKIP_SAVE"},
        description="Image file (empty: the panel's source)")
    mask_path: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Mask Path", subtype="FILE_PATH", options={"SKIP_SAVE"},
        description="Optional mask image: white or opaque marks the object (empty: the panel's mask)")
    engine: bpy.props.StringProperty(name="Engine", default="relief", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0, options={"SKIP_SAVE"})  # type: ignore[valid-type]
    params_json: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Parameters", options={"SKIP_SAVE"},
        description='Engine parameters as JSON, e.g. {"resolution": 128} (empty: the panel\'s values)')
    shading: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Shading", default="AUTO", options={"SKIP_SAVE"},
        items=[("AUTO", "Auto Smooth", ""), ("SMOOTH", "Smooth", ""), ("FLAT", "Flat", ""),
               ("NORMALS", "Backend Normals", "")])
    with_material: bpy.props.BoolProperty(name="With Material", options={"SKIP_SAVE"})  # type: ignore[valid-type]
    with_color: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Use Image as Base Colour", default=True, options={"SKIP_SAVE"})
    view_camera: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="View Camera", default=True, options={"SKIP_SAVE"},
        description="Make a camera for the estimated view (from a reference empty: perspective views only)")
    selected_views: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Selected Empties as Views", default=False, options={"SKIP_SAVE"},
        description="Every selected reference-image empty is a view of the same object, the active one first "
                    "(hi3dgen multi-view)")

    _timer: Any = None

    @classmethod
    def poll(cls, context: Any) -> bool:
        return not generation.is_running()

    def execute(self, context: Any) -> OpResult:
        """Blocking generation (scripts, background mode)."""
        try:
            settings, options, placement = _settings_from(self, context)
            objects = generation.run_blocking(context, settings, options, placement)
        except (sources.SourceProblem, ValueError) as exc:
            self.report({"ERROR"}, generation.refuse("bad_input", str(exc)).user_text())
            return {"CANCELLED"}
        except JobFailed as failure:
            self.report({"ERROR"}, failure.user_text())
            return {"CANCELLED"}
        _report_result(self)
        return {"FINISHED"} if objects else {"CANCELLED"}

    def invoke(self, context: Any, event: Any) -> OpResult:
        """Interactive generation: a timer follows the backend, this modal handler only watches for Esc."""
        if bpy.app.background:
            return self.execute(context)
        try:
            settings, options, placement = _settings_from(self, context)
            generation.start(context, settings, options, placement)
        except (sources.SourceProblem, ValueError) as exc:
            self.report({"ERROR"}, generation.refuse("bad_input", str(exc)).user_text())
            return {"CANCELLED"}
        except BackendUnavailable as exc:
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> OpResult:
        if event.type == "ESC" and event.value == "PRESS":
            generation.cancel()
            return {"RUNNING_MODAL"}
        run = generation.active()
        if run is not None and not run.closed:
            return {"PASS_THROUGH"}  # the timer is still following the backend
        context.window_manager.event_timer_remove(self._timer)
        error = generation.last_error()
        if error is not None:
            self.report({"WARNING"} if error.code == "cancelled" else {"ERROR"}, error.user_text())
            return {"CANCELLED"}
        _report_result(self)
        return {"FINISHED"}


class HI3DGEN_OT_cancel(bpy.types.Operator):
    """Stop the running generation (the scene stays as it was)"""

    bl_idname = "hi3dgen.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return generation.is_running()

    def execute(self, context: Any) -> OpResult:
        generation.cancel()
        return {"FINISHED"}


class HI3DGEN_OT_check_backend(bpy.types.Operator):
    """Start the backend if needed, do the handshake and show what it offers"""

    bl_idname = "hi3dgen.check_backend"
    bl_label = "Check Backend"

    def execute(self, context: Any) -> OpResult:
        from .preferences import get_preferences

        prefs = get_preferences(context)
        try:
            lines = generation.check_backend(context)
        except BackendUnavailable as exc:
            lines = [exc.message, exc.hint, *exc.log.splitlines()[-8:]]
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
        else:
            self.report({"INFO"}, lines[0] if lines else "Backend answered.")
        if prefs is not None:
            prefs.check_result = "\n".join(line for line in lines if line)
        return {"FINISHED"}


class HI3DGEN_OT_stop_backend(bpy.types.Operator):
    """Stop the backend process (frees the memory its models hold; it restarts on the next generation)"""

    bl_idname = "hi3dgen.stop_backend"
    bl_label = "Stop Backend"

    def execute(self, context: Any) -> OpResult:
        generation.stop_backend()
        return {"FINISHED"}


classes = (HI3DGEN_OT_generate, HI3DGEN_OT_cancel, HI3DGEN_OT_check_backend, HI3DGEN_OT_stop_backend)


def _report_result(op: Any) -> None:
    """The result line in Blender's status bar and info log; a mask warning as a warning, never as plain success."""
    op.report({"INFO"}, f"Hi3DGen: {generation.last_result()}")
    if generation.last_warning():
        op.report({"WARNING"}, f"Hi3DGen: {generation.last_warning()}")
