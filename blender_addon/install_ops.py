"""Install / Repair / Remove Backend: thin operators over installer.py and the timer that follows a run
(install_ui.py draws them in the preferences and the panel).

Interactive runs are followed by ``pump`` (a ``bpy.app.timers`` function) while pip runs in a subprocess
read by the installer's worker thread, so Blender stays responsive. In background mode (and the bpy
module) timers never fire: the operator then waits for the run itself (``run_blocking``).
"""

import os
import sys
import threading
import time
from typing import Any, Literal

import bpy

from . import generation, install_env, install_summary, preferences
from .client import BackendUnavailable
from .install_plan import (
    InstallSettings,
    PlanProblem,
    addon_version,
    find_pins,
    pins_hash,
    plan_install,
    this_machine,
)
from .installer import Installer, InstallState
from .pip_output import InstallError
from .settings import ENV_PYTHON, find_backend_root

OpResult = set[Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]]
TIMER_SECONDS = 0.25
LOG_NAME = "install.log"


class _Confirm:
    lines: list[str] = []
    "What the Install Backend dialog shows (the plan of the press being confirmed)."


class _State:
    installer: Installer | None = None
    last: InstallState | None = None
    "The last finished run (or a refusal before one started)."
    status: tuple[float, install_env.EnvStatus] | None = None
    "The environment's status and when it was read (the panel redraws often)."


# ---------------------------------------------------------------------------------------------- queries


def user_dir() -> str:
    """The extension's user folder (Blender's place for an extension's own data)."""
    try:
        return str(bpy.utils.extension_path_user(preferences.PACKAGE, path="", create=True))
    except ValueError:  # loaded as a plain add-on (development): a folder of Blender's user configuration
        return os.path.join(str(bpy.utils.user_resource("CONFIG", path="hi3dgen", create=True)))


def env_dir() -> str:
    return os.path.join(user_dir(), "backend-env")


def log_path() -> str:
    return os.path.join(user_dir(), LOG_NAME)


def running() -> Installer | None:
    inst = _State.installer
    return inst if inst is not None and not inst.snapshot().finished else None


def last_state() -> InstallState | None:
    return _State.last


def env_status(max_age: float = 2.0) -> install_env.EnvStatus:
    """The environment's status (missing, ready, outdated, broken), re-read at most every ``max_age`` s."""
    cached = _State.status
    if cached is not None and time.monotonic() - cached[0] < max_age:
        return cached[1]
    pins = find_pins(preferences.ADDON_DIR)
    try:
        with open(pins, encoding="utf-8") as f:
            digest = pins_hash(f.read())
    except OSError:
        digest = ""
    status = install_env.env_status(env_dir(), addon_version(preferences.ADDON_DIR), digest)
    _State.status = (time.monotonic(), status)
    return status


def install_settings(context: Any = None) -> InstallSettings:
    """The install as the preferences and Blender's online access describe it."""
    prefs = preferences.get_preferences(context)
    get = (lambda name, default: getattr(prefs, name, default)) if prefs is not None else (lambda n, d: d)
    wheels = get("install_wheels", "")
    return InstallSettings(user_dir=user_dir(), pins_path=find_pins(preferences.ADDON_DIR),
                           addon_version=addon_version(preferences.ADDON_DIR),
                           torch_build=get("install_torch", "auto"),
                           wheel_dir=bpy.path.abspath(wheels) if wheels else "",
                           index_url=get("install_index_url", ""), online=bool(bpy.app.online_access),
                           backend_root=find_backend_root(preferences.ADDON_DIR))


# ---------------------------------------------------------------------------------------------- actions


def start(context: Any = None, settings: InstallSettings | None = None, timer: bool = True) -> Installer:
    """Plan and start an install (or a repair: the same, into a fresh folder); ``PlanProblem`` if it
    cannot start. With ``timer`` a Blender timer follows it and finishes it."""
    if running() is not None:
        raise PlanProblem("busy", "An install is already running.", "Wait for it or cancel it.")
    if generation.is_running():
        raise PlanProblem("busy", "A generation is running.", "Wait for it or cancel it, then install.")
    settings = settings or install_settings(context)
    try:
        plan = plan_install(settings, this_machine())
        install_summary.check_disk(plan)
    except PlanProblem as problem:
        _State.last = InstallState(stage="done", label="Install refused", finished=True,
                                   error=InstallError(problem.code, problem.message, problem.hint))
        raise
    _stop_backend_in(plan.env_dir)  # a repair replaces the folder the running backend's files come from
    _State.installer = Installer(plan, os.path.join(settings.user_dir, LOG_NAME)).start()
    _State.last = None
    if timer and not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=TIMER_SECONDS)
    return _State.installer


def run_blocking(context: Any = None, settings: InstallSettings | None = None) -> InstallState:
    """Install and wait for the end (background mode, scripts); the backend check follows a success."""
    installer = start(context, settings, timer=False)
    installer.wait()
    return finish(context)


def pump() -> float | None:
    """Timer step: redraw the progress; at the end, finish the run."""
    inst = _State.installer
    if inst is None:
        return None
    _redraw()
    if not inst.snapshot().finished:
        return TIMER_SECONDS
    finish(bpy.context, wait_check=False)
    _redraw()
    return None


def finish(context: Any = None, wait_check: bool = True) -> InstallState:
    """After a run: on success point Backend Python at the new interpreter and run Check Backend (with
    ``wait_check`` False, a timer waits for the backend's first start, which imports torch)."""
    inst = _State.installer
    assert inst is not None
    state = inst.snapshot()
    _State.installer, _State.last, _State.status = None, state, None
    if state.error is not None:
        print(f"[Hi3DGen] install failed: {state.error.user_text()}\n{state.error.detail}", file=sys.stderr)
    prefs = preferences.get_preferences(context)
    if state.ok and prefs is not None:
        prefs.backend_python = state.python
        generation.stop_backend()  # the next start uses the new interpreter
        if wait_check:
            prefs.check_result = "\n".join(check_lines(context))
        else:
            _start_check(context, prefs)
    return state


def _start_check(context: Any, prefs: Any) -> None:
    try:
        proc = generation.start_backend(context)
    except BackendUnavailable:
        prefs.check_result = "\n".join(check_lines(context))
        return
    prefs.check_result = "Checking the new backend (its first start takes a while)..."
    deadline = time.monotonic() + preferences.backend_config(context).hello_timeout

    def follow() -> float | None:
        if not proc.hello_event.is_set() and time.monotonic() < deadline:
            return 0.5
        current = preferences.get_preferences(bpy.context)
        if current is not None:
            current.check_result = "\n".join(check_lines(bpy.context))  # the handshake is done: no wait
        _redraw()
        return None

    bpy.app.timers.register(follow, first_interval=0.5)


def check_lines(context: Any = None) -> list[str]:
    """Check Backend's lines (the handshake), or what went wrong."""
    note = [f"Note: {ENV_PYTHON} is set and overrides Backend Python."] if os.environ.get(ENV_PYTHON) else []
    try:
        return note + [line for line in generation.check_backend(context) if line]
    except BackendUnavailable as exc:
        return note + [line for line in (exc.message, exc.hint, *exc.log.splitlines()[-8:]) if line]


def cancel() -> bool:
    inst = running()
    if inst is None:
        return False
    inst.cancel()
    return True


def remove(context: Any = None) -> threading.Thread | None:
    """Delete the environment: it is renamed away at once and deleted by a background thread (returned).
    Backend Python is cleared if it pointed there."""
    if running() is not None:
        raise PlanProblem("busy", "An install is running.", "Cancel it first.")
    folder = env_dir()
    _stop_backend_in(folder)
    deleting = install_env.discard_tree(folder, folder)
    _State.status = None
    prefs = preferences.get_preferences(context)
    if prefs is not None and inside(bpy.path.abspath(prefs.backend_python), folder):
        prefs.backend_python = ""
        prefs.check_result = ""
    return deleting


def shutdown() -> None:
    """Add-on disabled or Blender quitting: stop a running install (its worker deletes the partial)."""
    inst = _State.installer
    if inst is not None:
        inst.cancel()
        inst.wait(30.0)
    if bpy.app.timers.is_registered(pump):
        bpy.app.timers.unregister(pump)


def _stop_backend_in(folder: str) -> None:
    proc = generation.running_backend()
    if proc is not None and inside(str(proc.config.python), folder):
        generation.stop_backend()


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies in it."""
    if not path:
        return False
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in wm.windows if wm is not None else ():
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


# ---------------------------------------------------------------------------------------------- operators


class HI3DGEN_OT_install_backend(bpy.types.Operator):
    """Make the backend's own Python environment (torch and the pinned packages) in the extension's user
    folder, then use it. Again on an existing one: repair it (made anew, swapped in at the end)"""

    bl_idname = "hi3dgen.install_backend"
    bl_label = "Install Backend"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return running() is None

    def invoke(self, context: Any, event: Any) -> OpResult:
        """Say what will happen (folder, Python, torch build, source, sizes, licences) before it starts."""
        try:
            plan = plan_install(install_settings(context), this_machine())
        except PlanProblem as problem:
            self.report({"ERROR"}, f"{problem.message} {problem.hint}".strip())
            return {"CANCELLED"}
        _Confirm.lines = install_summary.summary_lines(plan, install_summary.free_bytes(plan.env_dir))
        return context.window_manager.invoke_props_dialog(
            self, width=640, title="Install Backend", confirm_text="Install")

    def draw(self, context: Any) -> None:
        if self.layout is None:
            return
        col = self.layout.column(align=True)
        for line in _Confirm.lines:
            col.label(text=line)
        col.label(text="Cancel at any time: nothing half-made is kept.", icon="INFO")

    def execute(self, context: Any) -> OpResult:
        try:
            if not bpy.app.background:
                start(context)
                self.report({"INFO"}, "Installing the backend: progress in the Hi3DGen panel and preferences.")
                return {"FINISHED"}
            state = run_blocking(context)
        except PlanProblem as problem:
            self.report({"ERROR"}, f"{problem.message} {problem.hint}".strip())
            return {"CANCELLED"}
        if not state.ok:
            text = state.error.user_text() if state.error else "The install was cancelled."
            self.report({"ERROR"} if state.error else {"WARNING"}, text)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Backend installed: {state.python}")
        return {"FINISHED"}


class HI3DGEN_OT_cancel_install(bpy.types.Operator):
    """Stop the running install (nothing half-made is kept)"""

    bl_idname = "hi3dgen.cancel_install"
    bl_label = "Cancel Install"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return running() is not None

    def execute(self, context: Any) -> OpResult:
        cancel()
        return {"FINISHED"}


class HI3DGEN_OT_remove_backend(bpy.types.Operator):
    """Delete the backend environment Install Backend made (the weights stay)"""

    bl_idname = "hi3dgen.remove_backend"
    bl_label = "Remove Backend"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return running() is None

    def invoke(self, context: Any, event: Any) -> OpResult:
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context: Any) -> OpResult:
        try:
            remove(context)
        except (PlanProblem, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Removed the backend environment ({env_dir()})")
        return {"FINISHED"}


class HI3DGEN_OT_open_install_log(bpy.types.Operator):
    """Open the last install's full log"""

    bl_idname = "hi3dgen.open_install_log"
    bl_label = "Open Install Log"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return os.path.isfile(log_path())

    def execute(self, context: Any) -> OpResult:
        bpy.ops.wm.path_open(filepath=log_path())
        return {"FINISHED"}


classes = (HI3DGEN_OT_install_backend, HI3DGEN_OT_cancel_install, HI3DGEN_OT_remove_backend,
           HI3DGEN_OT_open_install_log)
