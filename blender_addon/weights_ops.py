"""Download Weights in Blender: the buttons, the confirmation (sizes, licences, free space), the progress bar.

The work is the backend's ``download`` command run by ``downloads.DownloadRun``; this module keeps the one
download of the session, follows it with a timer (interactive) or waits for it (background mode and
scripts, where timers never fire), and draws it. ``draw_downloads`` is what the preferences and the panel
call.
"""

import os
import sys
import urllib.parse
from typing import Any, Literal

import bpy

from . import downloads, generation, preferences
from .settings import config_problem

OpResult = set[Literal["RUNNING_MODAL", "CANCELLED", "FINISHED", "PASS_THROUGH", "INTERFACE"]]
TIMER_SECONDS = 0.25
PLAN_TIMEOUT = 90.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _State:
    run: downloads.DownloadRun | None = None
    names: tuple[str, ...] = ()
    plan: downloads.Plan | None = None
    last_error: downloads.DownloadFailed | None = None
    last_result: str = ""
    downloaded: set[str] = set()
    "Models fetched in this session (the handshake that said 'missing' is older)."


# ---------------------------------------------------------------------------------------------- plain


def is_downloading() -> bool:
    return _State.run is not None and not _State.run.finished


def online_problem(environ: dict[str, str] | None = None) -> str:
    """Why a download may not go online now ('' when it may): Blender's Allow Online Access is off.

    An HF_ENDPOINT on this machine (127.0.0.1, localhost) is not the internet, so it is always allowed.
    """
    env = os.environ if environ is None else environ
    host = urllib.parse.urlsplit(env.get("HF_ENDPOINT", "")).hostname or ""
    if bpy.app.online_access or host in LOOPBACK:
        return ""
    return "Online access is off: enable Preferences > System > Network > Allow Online Access to download."


def backend_config(context: Any) -> Any:
    config = preferences.backend_config(context)
    problem = config_problem(config)
    if problem:
        raise downloads.DownloadFailed(problem)
    return config


def start(context: Any, names: list[str]) -> downloads.DownloadRun:
    """Start downloading ``names`` in a child process; ``pump`` (a timer) follows it."""
    if is_downloading():
        raise downloads.DownloadFailed("A download is already running.", "Wait for it or cancel it.")
    run = downloads.DownloadRun(downloads.download_config(backend_config(context), names))
    _State.run, _State.names, _State.last_error, _State.last_result = run, tuple(names), None, ""
    if not bpy.app.background and not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=TIMER_SECONDS, persistent=True)
    return run


def pump() -> float | None:
    """Timer step: redraw the progress; record the outcome once the child ended."""
    run = _State.run
    if run is None:
        return None
    _redraw()
    if not run.finished:
        return TIMER_SECONDS
    finish(run)
    _redraw()
    return None


def finish(run: downloads.DownloadRun) -> downloads.Status:
    """Record how ``run`` ended (error or the folders); an idle backend restarts to see new weights."""
    status = run.snapshot()
    if _State.run is run:
        _State.run = None
    if status.error is not None:
        _State.last_error = status.error
        print(f"[Hi3DGen] download: {status.error.message} {status.error.hint}", file=sys.stderr)
        return status
    _State.downloaded.update(status.folders)
    _State.last_result = "Weights ready: " + ", ".join(status.folders) if status.folders else "Nothing to do."
    if generation.running_backend() is not None and not generation.is_running():
        generation.stop_backend()  # the next generation starts one whose handshake lists the new weights
    return status


def cancel() -> bool:
    """End the running download (its parts stay: the next press resumes); False when none runs."""
    run = _State.run
    if run is None or run.finished:
        return False
    run.cancel()
    if bpy.app.background:
        run.wait(30.0)
        finish(run)
    return True


def still_missing(missing: list[Any]) -> list[str]:
    """An engine's missing models that this session has not downloaded since."""
    return [m for m in downloads.wanted_models(missing) if m not in _State.downloaded]


# ---------------------------------------------------------------------------------------------- drawing


def draw_downloads(layout: Any, groups: list[tuple[str, list[str]]]) -> None:
    """A Download button per (label, model names), or the running download's bar; then the last outcome."""
    run = _State.run
    if run is not None and not run.finished:
        status = run.snapshot()
        row = layout.row(align=True)
        row.progress(factor=downloads.fraction(status), type="BAR", text=downloads.status_text(status))
        row.operator("hi3dgen.cancel_download", text="", icon="CANCEL")
    else:
        for label, names in groups:
            if names:
                op = layout.operator("hi3dgen.download_weights", text=f"Download {label}", icon="IMPORT")
                if op is not None:
                    op.models = " ".join(names)
    if _State.last_error is not None:
        icon = "CANCEL" if _State.last_error.code == "cancelled" else "ERROR"
        layout.label(text=_State.last_error.message[:160], icon=icon)
        if _State.last_error.hint:
            layout.label(text=_State.last_error.hint[:160], icon="INFO")
    elif _State.last_result:
        layout.label(text=_State.last_result, icon="CHECKMARK")


def draw_panel(layout: Any, engine: dict[str, Any] | None) -> None:
    """The panel's hook: a Download button when the chosen engine reports missing weights (or the bar)."""
    missing = still_missing(list(engine.get("missing") or [])) if engine is not None else []
    if not missing and not is_downloading() and _State.last_error is None:
        return
    box = layout.box()
    if missing:
        box.label(text=f"Missing weights: {', '.join(missing)}", icon="ERROR")
    draw_downloads(box, [("Weights", missing)])


def draw_preferences(layout: Any) -> None:
    """The preferences' hook: a box with a Download button per engine and the segmenter (or the bar)."""
    box = layout.box()
    box.label(text="Download Weights (sizes and licences are shown before anything is fetched)")
    draw_downloads(box, preference_groups())


def shutdown() -> None:
    """Blender quits or the add-on goes: end a running download (its parts stay for the next time)."""
    run, _State.run = _State.run, None
    if run is not None and not run.finished:
        run.cancel(grace=2.0)


def preference_groups() -> list[tuple[str, list[str]]]:
    return [(downloads.GROUP_LABELS["hi3dgen"], ["hi3dgen"]),
            (downloads.GROUP_LABELS["segmenter"], ["segmenter"])]


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


# ---------------------------------------------------------------------------------------------- operators


class HI3DGEN_OT_download_weights(bpy.types.Operator):
    """Download model weights through the backend (sizes and licences are shown first; resumable)"""

    bl_idname = "hi3dgen.download_weights"
    bl_label = "Download Weights"

    models: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Models", default="hi3dgen", options={"SKIP_SAVE"},
        description="Model names, or hi3dgen (its three models) or segmenter, separated by spaces")

    @classmethod
    def poll(cls, context: Any) -> bool:
        return not is_downloading()

    def _names(self) -> list[str]:
        return [n for n in self.models.split() if n]

    def invoke(self, context: Any, event: Any) -> OpResult:
        problem = online_problem()
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        try:
            _State.plan = downloads.fetch_plan(backend_config(context), self._names(), PLAN_TIMEOUT)
        except downloads.DownloadFailed as exc:
            _State.last_error = exc
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
            return {"CANCELLED"}
        if _State.plan.remaining == 0 and all(m.found_at for m in _State.plan.models):
            self.report({"INFO"}, "These weights are already present.")
            return {"CANCELLED"}
        return context.window_manager.invoke_props_dialog(
            self, width=560, title="Download Weights", confirm_text="Download")

    def draw(self, context: Any) -> None:
        plan, layout = _State.plan, self.layout
        if layout is None:
            return
        for line in plan.lines() if plan is not None else []:
            layout.label(text=line)
        layout.label(text="Cancel keeps what arrived; pressing Download again resumes.", icon="INFO")

    def execute(self, context: Any) -> OpResult:
        problem = online_problem()
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        try:
            run = start(context, self._names())
        except downloads.DownloadFailed as exc:
            self.report({"ERROR"}, f"{exc.message} {exc.hint}".strip())
            return {"CANCELLED"}
        if not bpy.app.background:
            return {"FINISHED"}
        try:  # no timers in background mode: wait here
            run.wait(None)
        finally:
            status = finish(run)
        if status.error is not None:
            self.report({"ERROR"}, f"{status.error.message} {status.error.hint}".strip())
            return {"CANCELLED"}
        self.report({"INFO"}, _State.last_result)
        return {"FINISHED"}


class HI3DGEN_OT_cancel_download(bpy.types.Operator):
    """Stop the weight download (what arrived is kept; Download Weights resumes it)"""

    bl_idname = "hi3dgen.cancel_download"
    bl_label = "Cancel Download"

    @classmethod
    def poll(cls, context: Any) -> bool:
        return is_downloading()

    def execute(self, context: Any) -> OpResult:
        cancel()
        return {"FINISHED"}


classes = (HI3DGEN_OT_download_weights, HI3DGEN_OT_cancel_download)
