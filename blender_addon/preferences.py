"""Add-on preferences (keyed by the package name) and the backend configuration built from them."""

import os
from typing import Any

import bpy

from .install_plan import TORCH_CHOICES
from .settings import (
    DEVICES,
    BackendConfig,
    find_backend_root,
    parse_prefix,
    prefix_is_shell,
    resolve_python,
)

PACKAGE = __package__ or "hi3dgen"
ADDON_DIR = os.path.dirname(os.path.abspath(__file__))


class HI3DGEN_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    backend_python: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Backend Python", subtype="FILE_PATH",
        description="Python interpreter of the backend's environment (the one with torch installed). "
                    "The HI3DGEN_PYTHON environment variable overrides it")
    device: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Device", default="auto",
        items=[(d, d.upper() if d != "auto" else "Auto", f"Run the models on {d}") for d in DEVICES])
    weights_dir: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Weights Folder", subtype="DIR_PATH",
        description="Folder with the model weights (empty: the backend's default, HI3DGEN_WEIGHTS or the "
                    "Hugging Face cache)")
    allow_downloads: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Allow Weight Downloads", default=False,
        description="Let the backend download missing model weights from the Hugging Face Hub (only while "
                    "Blender's online access is enabled)")
    keep_running: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Keep Backend Running", default=True,
        description="Keep the backend and its loaded models between generations (faster, holds memory)")
    hang_timeout: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Hang Timeout", default=15.0, min=3.0, max=600.0, unit="TIME_ABSOLUTE",
        description="Seconds without any answer from a busy backend before it is stopped as hung")
    remote_command: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Remote Command",
        description="Optional command prefix to run the backend elsewhere, e.g. 'ssh gpu-box' "
                    "(Backend Python is then a path on that machine), or locally, e.g. 'nice -n 10'")
    remote_shell: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Arguments", default="AUTO",
        description="Whether the Remote Command hands the backend command to a shell that parses it again",
        items=[("AUTO", "Detect", "A remote shell when a word of the command is ssh or autossh (or wsl "
                                  "without -e)"),
               ("SHELL", "Remote Shell", "The command is parsed by a shell on the other side (ssh, a "
                                         "wrapper script around ssh): it is sent as one quoted string"),
               ("DIRECT", "Direct", "The prefix runs its arguments as they are (nice, env, docker exec)")])
    remote_backend_dir: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Remote Backend Folder",
        description="With a remote command: the folder on that machine that contains the backend package")
    check_result: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Check Result", options={"SKIP_SAVE"})
    # Install Backend (install_ops.py)
    install_torch: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Torch Build", default="auto",
        description="Which torch build Install Backend puts in (Auto: CUDA for the NVIDIA driver found, the "
                    "standard build on macOS, else CPU)",
        items=[(c, {"auto": "Auto", "cpu": "CPU", "default": "Index Default"}.get(c, c.upper()),
                f"torch build: {c}") for c in TORCH_CHOICES])
    install_wheels: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Wheel Folder", subtype="DIR_PATH",
        description="Install offline from this folder of wheels (torch and backend-pins.txt); the "
                    "HI3DGEN_WHEELS environment variable overrides it")
    install_index_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Package Index",
        description="A private package index ('simple' URL) to install from instead of the public ones; the "
                    "HI3DGEN_INDEX_URL environment variable overrides it")

    def draw(self, context: Any) -> None:
        from . import install_ui

        layout = self.layout
        install_ui.draw_install(layout, context, self)
        env_python = os.environ.get("HI3DGEN_PYTHON", "")
        row = layout.row()
        row.prop(self, "backend_python")
        row.enabled = not env_python
        if env_python:
            layout.label(text=f"Overridden by HI3DGEN_PYTHON={env_python}", icon="INFO")
        layout.prop(self, "device")
        layout.prop(self, "weights_dir")
        from . import weights_ops  # here: weights_ops imports this module

        weights_ops.draw_preferences(layout)
        col = layout.column()
        col.prop(self, "allow_downloads")
        if self.allow_downloads and not bpy.app.online_access:
            col.label(text="Online access is off (Preferences > System): downloads stay disabled.",
                      icon="ERROR")
        layout.prop(self, "keep_running")
        layout.prop(self, "hang_timeout")
        box = layout.box()
        box.label(text="Remote backend (optional)")
        box.prop(self, "remote_command")
        box.prop(self, "remote_shell")
        box.prop(self, "remote_backend_dir")
        prefix, problem = parse_prefix(self.remote_command)
        if problem:
            box.label(text=problem, icon="ERROR")
        elif prefix:
            shell = prefix_is_shell(prefix, self.remote_shell)
            box.label(text="Sent as one quoted line to a remote shell" if shell
                      else "Arguments passed on as they are (no shell)", icon="INFO")
        row = layout.row()
        row.operator("hi3dgen.check_backend", icon="PLUGIN")
        row.operator("hi3dgen.stop_backend", icon="CANCEL")
        for line in self.check_result.splitlines():
            layout.label(text=line)


def get_preferences(context: Any = None) -> Any:
    """This add-on's preferences, or None when it is not enabled as an add-on (development imports)."""
    ctx = context or bpy.context
    if ctx.preferences is None:
        return None
    addon = ctx.preferences.addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


def backend_config(context: Any = None) -> BackendConfig:
    """The backend command and environment from the preferences and $HI3DGEN_PYTHON."""
    prefs = get_preferences(context)
    get = (lambda name, default: getattr(prefs, name, default)) if prefs is not None else (lambda n, d: d)
    pref_python = get("backend_python", "")
    prefix, problem = parse_prefix(get("remote_command", ""))
    return BackendConfig(
        python=resolve_python(bpy.path.abspath(pref_python) if pref_python else ""),
        backend_root=find_backend_root(ADDON_DIR),
        prefix=prefix,
        prefix_mode=get("remote_shell", "AUTO"),
        prefix_problem=problem,
        remote_root=get("remote_backend_dir", ""),
        device=get("device", "auto"),
        weights_dir=bpy.path.abspath(get("weights_dir", "")) if get("weights_dir", "") else "",
        allow_download=bool(get("allow_downloads", False)) and bool(bpy.app.online_access),
        hang_timeout=float(get("hang_timeout", 15.0)),
    )


def keep_running(context: Any = None) -> bool:
    prefs = get_preferences(context)
    return bool(prefs.keep_running) if prefs is not None else True


classes = (HI3DGEN_AddonPreferences,)
