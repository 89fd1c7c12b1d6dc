"""Runs generations inside Blender: the one backend of the session, the active job, and the timer.

Interactive runs are driven by ``pump`` (a ``bpy.app.timers`` function on the main thread), which takes the
reader thread's frames, updates the progress shown in the panel and, at the end, builds the objects.
Blocking runs (background mode, scripts) use ``run_blocking``. Only this main-thread code touches bpy.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any

import bpy

from . import mesh_builder, preferences
from .client import BackendManager, BackendProcess, BackendUnavailable, describe_hello, engine_state
from .job import Job, JobFailed, JobResult
from .settings import BuildOptions, GenerateSettings
from .settings import config_problem as settings_problem
from .wire import protocol as P

TIMER_SECONDS = 0.1

__all__ = ["engine_state"]


@dataclass
class ActiveRun:
    """The interactive generation in flight."""

    job: Job
    options: BuildOptions
    placement: mesh_builder.Placement
    started: float
    objects: list[str] | None = None
    "Names of the objects made, once done."
    closed: bool = False
    "True once the result was built or the failure recorded."


class _State:
    manager = BackendManager()
    active: ActiveRun | None = None
    last_error: JobFailed | None = None
    last_result: str = ""
    last_warning: str = ""
    hello: P.Hello | None = None


# ---------------------------------------------------------------------------------------------- queries


def active() -> ActiveRun | None:
    return _State.active


def is_running() -> bool:
    run = _State.active
    return run is not None and not run.job.finished


def last_error() -> JobFailed | None:
    return _State.last_error


def last_result() -> str:
    return _State.last_result


def last_warning() -> str:
    """The last result's warning (a mask of nearly the whole frame, an unsure estimate); '' when none."""
    return _State.last_warning


def last_hello() -> P.Hello | None:
    return _State.hello


def running_backend() -> BackendProcess | None:
    return _State.manager.running()


def config_problem(context: Any = None) -> str:
    """What the user must do before generating ('' when the backend settings look usable)."""
    return settings_problem(preferences.backend_config(context))


# ---------------------------------------------------------------------------------------------- backend


def backend(context: Any = None) -> BackendProcess:
    """The session's backend with its handshake done (started or restarted as needed)."""
    config = preferences.backend_config(context)
    problem = settings_problem(config)
    if problem:
        raise BackendUnavailable(problem)
    proc = _State.manager.get(config)
    _State.hello = proc.hello
    return proc


def start_backend(context: Any = None) -> BackendProcess:
    """Start the backend (or reuse the running one) without waiting for its handshake: its
    ``hello_event`` is set once it answered or died. Raises ``BackendUnavailable``."""
    config = preferences.backend_config(context)
    problem = settings_problem(config)
    if problem:
        raise BackendUnavailable(problem)
    return _State.manager.get(config, wait=False)


def check_backend(context: Any = None) -> list[str]:
    """Start (or reuse) the backend, ping it, and describe it; raises ``BackendUnavailable``."""
    was_running = running_backend() is not None
    proc = backend(context)
    started = time.perf_counter()
    pong = proc.ping() if not is_running() else None
    lines = describe_hello(proc.hello) if proc.hello is not None else []
    if pong is not None:
        ms = 1000 * (time.perf_counter() - started)
        lines.append(f"Answered a ping in {ms:.0f} ms (pid {proc.proc.pid}).")
    if not was_running and not preferences.keep_running(context) and not is_running():
        _State.manager.stop()
    return lines


def stop_backend() -> None:
    """Cancel what runs and stop the backend (frees the memory its models hold)."""
    run = _State.active
    if run is not None and not run.job.finished:
        run.job.cancel()
    _State.manager.stop()


def shutdown() -> None:
    """End everything at once (add-on disabled, Blender quitting)."""
    _State.manager.kill()  # first: whatever fails below, no backend outlives Blender or the add-on
    _State.active = None
    with contextlib.suppress(Exception):  # bpy may be half torn down at exit
        if bpy.app.timers.is_registered(pump):
            bpy.app.timers.unregister(pump)


# ---------------------------------------------------------------------------------------------- runs


def start(context: Any, settings: GenerateSettings, options: BuildOptions,
          placement: mesh_builder.Placement) -> ActiveRun:
    """Start an interactive generation; ``pump`` (a timer) follows it from here."""
    if is_running():
        raise BackendUnavailable("A generation is already running.", hint="Wait for it or cancel it.")
    config = preferences.backend_config(context)
    problem = settings_problem(config)
    if problem:
        raise BackendUnavailable(problem)
    proc = _State.manager.get(config, wait=False)
    run = ActiveRun(Job(proc, settings, config.hang_timeout), options, placement, time.monotonic())
    _State.active, _State.last_error, _State.last_result, _State.last_warning = run, None, "", ""
    if not bpy.app.timers.is_registered(pump):
        bpy.app.timers.register(pump, first_interval=TIMER_SECONDS, persistent=True)  # survives file loads
    return run


def pump() -> float | None:
    """Timer step: drive the active job; build its result when done. Returns the next interval."""
    run = _State.active
    if run is None:
        return None
    try:
        finished = run.job.pump()
    except Exception as exc:  # a timer that raises is dropped by Blender: the run would never end
        with contextlib.suppress(Exception):
            run.job.abort(exc)
        finished = True
    _State.hello = run.job.backend.hello or _State.hello
    _redraw()
    if not finished:
        return TIMER_SECONDS
    _finish(bpy.context, run)
    _redraw()
    return None


def cancel() -> bool:
    """Cancel the active generation; False if none is running."""
    run = _State.active
    if run is None or run.job.finished:
        return False
    run.job.cancel()
    return True


def _finish(context: Any, run: ActiveRun) -> None:
    try:
        if run.job.failure is not None:
            raise run.job.failure
        assert run.job.result is not None
        objects = _build(context, run.job.result, run.options, run.placement)
        run.objects = [o.name for o in objects]
    except JobFailed as failure:
        _record_failure(failure)
    finally:
        run.closed = True
        if not preferences.keep_running(context) and _State.manager.running() is not None:
            _State.manager.stop()


def run_blocking(context: Any, settings: GenerateSettings, options: BuildOptions,
                 placement: mesh_builder.Placement, timeout: float | None = None) -> list[Any]:
    """Generate and build synchronously; raises ``JobFailed`` (scene unchanged) on failure."""
    if is_running():
        raise JobFailed("busy", "A generation is already running.", "Wait for it or cancel it.")
    _State.last_error, _State.last_result, _State.last_warning = None, "", ""
    try:
        proc = backend(context)
        job = Job(proc, settings, preferences.backend_config(context).hang_timeout)
        result = job.wait(timeout)
        return _build(context, result, options, placement)
    except BackendUnavailable as exc:
        failure = JobFailed("backend_unavailable", exc.message, exc.hint, log=exc.log)
        _record_failure(failure)
        raise failure from None
    except JobFailed as failure:
        _record_failure(failure)
        raise
    finally:
        if not preferences.keep_running(context):
            _State.manager.stop()


def _build(context: Any, result: JobResult, options: BuildOptions,
           placement: mesh_builder.Placement) -> list[Any]:
    meshes = [(m.name, m.arrays) for m in result.meshes]
    textures = [m.textures for m in result.meshes]
    try:
        objects = mesh_builder.add_result(context, meshes, textures, options, placement, result.stats.get("camera"))
    except Exception as exc:  # the scene was rolled back; whatever went wrong becomes a readable failure
        raise JobFailed("build_failed", f"Could not build the mesh in Blender: {exc}",
                        "Please report this with the console output.") from exc
    faces = sum(len(m.arrays["faces"]) for m in result.meshes)
    note = ""
    if options.with_material and not all(mesh_builder.wants_material(m.arrays, m.textures, options)
                                         for m in result.meshes):
        note = " (no material: this mesh has no UVs for the normal map)"
    report = result.mask_report()
    for obj in objects:  # scripts and later sessions can see where the outline came from
        obj["hi3dgen_mask"] = report
    mask = f"; mask: {report['source']}, {report.get('coverage', 0.0):.0%} of the image" if "source" in report else ""
    camera = objects[0].get("hi3dgen_view") if objects else None
    view = f"; view camera: {camera}" if camera else ""
    _State.last_result = (f"{', '.join(o.name for o in objects)}: {faces:,} faces in {result.seconds:.1f} s"
                          f"{mask}{view}{note}")
    _State.last_warning = result.mask_warning()
    if _State.last_warning:
        print(f"[Hi3DGen] WARNING: {_State.last_warning}", file=sys.stderr)
    return objects


def refuse(code: str, message: str, hint: str = "") -> JobFailed:
    """Record a request refused before it reached the backend (bad input), so the panel shows it too."""
    failure = JobFailed(code, message, hint)
    _State.last_result, _State.last_warning = "", ""
    _record_failure(failure)
    return failure


def _record_failure(failure: JobFailed) -> None:
    _State.last_error = failure
    print(f"[Hi3DGen] {failure.code}: {failure.user_text()}", file=sys.stderr)
    if failure.traceback:
        print(failure.traceback, file=sys.stderr)
    if failure.log:
        print("[Hi3DGen] backend log (last lines):\n" + failure.log, file=sys.stderr)


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()
