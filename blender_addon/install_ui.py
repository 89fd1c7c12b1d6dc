"""Install Backend in the preferences and the sidebar: the environment's state, the buttons, the progress
of a running install (stage, package, bytes) with Cancel, and the last failure with what to do."""

import os
from typing import Any

import bpy

from . import install_ops as ops
from . import preferences
from .install_plan import ENV_INDEX_URL, ENV_WHEELS


def draw_progress(layout: Any) -> bool:
    """The running install's bar, stage and package, with Cancel; False when none runs."""
    inst = ops.running()
    if inst is None:
        return False
    state = inst.snapshot()
    row = layout.row(align=True)
    row.progress(factor=state.fraction, type="BAR", text=state.label)
    row.operator("hi3dgen.cancel_install", text="", icon="CANCEL")
    if state.detail:
        layout.label(text=state.detail[:100], icon="BLANK1")
    return True


def draw_last(layout: Any) -> None:
    """The last run's failure (message, what to do, pip's lines) or its success."""
    state = ops.last_state()
    if state is None:
        return
    if state.error is None:
        layout.label(text=state.label, icon="CANCEL" if state.cancelled else "CHECKMARK")
        return
    box = layout.box()
    box.label(text=state.error.message, icon="ERROR")
    if state.error.hint:
        box.label(text=state.error.hint, icon="INFO")
    for line in state.error.detail.splitlines()[-4:]:
        box.label(text=line[:120])
    box.operator("hi3dgen.open_install_log", icon="TEXT")


def draw_install(layout: Any, context: Any, prefs: Any) -> None:
    """The preferences' Backend Environment box: state, Install / Repair / Remove, sources, torch build."""
    box = layout.box()
    box.label(text="Backend Environment", icon="CONSOLE")
    if not draw_progress(box):
        status = ops.env_status()
        icon = {"ready": "CHECKMARK", "missing": "INFO"}.get(status.state, "ERROR")
        box.label(text=status.message, icon=icon)
        row = box.row(align=True)
        label = "Install Backend" if status.state == "missing" else "Repair Backend"
        row.operator("hi3dgen.install_backend", text=label, icon="IMPORT")
        if status.state != "missing":
            row.operator("hi3dgen.remove_backend", text="Remove", icon="TRASH")
        row.operator("hi3dgen.open_install_log", text="", icon="TEXT")
        draw_last(box)
    col = box.column()
    col.prop(prefs, "install_torch")
    col.prop(prefs, "install_wheels")
    col.prop(prefs, "install_index_url")
    for var in (ENV_WHEELS, ENV_INDEX_URL):
        if os.environ.get(var):
            col.label(text=f"{var}={os.environ[var]} overrides the setting", icon="INFO")
    if not bpy.app.online_access and not (getattr(prefs, "install_wheels", "") or os.environ.get(ENV_WHEELS)):
        col.label(text="Online access is off (Preferences > System): only a Wheel Folder install works.",
                  icon="ERROR")


def draw_panel(layout: Any, context: Any, no_backend: bool) -> None:
    """The sidebar's offer: Install Backend when no backend is set, Repair when the environment in use is
    outdated, and the progress while an install runs."""
    if draw_progress(layout):
        return
    status = ops.env_status()
    prefs = preferences.get_preferences(context)
    in_use = prefs is not None and ops.inside(bpy.path.abspath(prefs.backend_python), ops.env_dir())
    if no_backend:
        layout.operator("hi3dgen.install_backend", icon="IMPORT")
    elif in_use and status.needs_repair:
        box = layout.box()
        box.label(text=status.message[:90], icon="ERROR")
        box.operator("hi3dgen.install_backend", text="Repair Backend", icon="IMPORT")
    draw_last(layout)

