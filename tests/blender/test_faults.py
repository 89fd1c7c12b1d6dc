"""Every backend fault, in real Blender through the installed extension and the real backend process.

Each test injects one fault with the backend's HI3DGEN_FAULT switch, for the first backend start only, and
checks what the user sees: the operator is CANCELLED with a message that says what happened and what to do,
the scene is exactly as before, no broken backend is left running, and the next generation works (the
add-on starts a fresh backend where the old one is gone).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.blender.blender_session import (
    backend_children,
    backends_killed_after,
    bpy,
    clear_scene,
    scene_snapshot,
)
from tests.blender.hang_watch import watch_hangs
from tests.blender.test_extension import (  # noqa: F401 - module fixtures, one installed extension here
    BACKEND_PYTHON,
    built_zip,
    ext,
    picture,
    prefs,
)

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")

FAST = '{"resolution": 32}'
SAFETY_SECONDS = 300.0  # only for a test that would otherwise wait forever; never an expected duration


# ------------------------------------------------------------------------------------------ helpers


@dataclass
class Spawns:
    """Backend starts seen while a test runs; the fault applies to the first one only."""

    fault: str
    test_engines: bool = False
    envs: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def fault_once(ext, monkeypatch) -> Iterator[Any]:  # noqa: F811
    """``fault_once('crash@relief')``: the next backend start gets HI3DGEN_FAULT, later starts do not."""
    ext.generation.stop_backend()
    original = ext.settings.BackendConfig.process_env
    holder: list[Spawns] = []

    def process_env(self, inherited: dict[str, str]) -> dict[str, str]:
        env = original(self, inherited)
        env.pop("HI3DGEN_FAULT", None)
        spawns = holder[0]
        if spawns.test_engines:
            env["HI3DGEN_TEST_ENGINES"] = "1"
        if not spawns.envs:
            env["HI3DGEN_FAULT"] = spawns.fault
        spawns.envs.append(env)
        return env

    def arm(fault: str, test_engines: bool = False) -> Spawns:
        holder.append(Spawns(fault, test_engines))
        return holder[0]

    monkeypatch.setattr(ext.settings.BackendConfig, "process_env", process_env)
    yield arm
    ext.generation.stop_backend()


@pytest.fixture
def verdicts(ext, monkeypatch) -> Iterator[list[set[str]]]:  # noqa: F811
    """What the generate operator's execute returned, call by call (Blender looks it up at call time)."""
    seen: list[set[str]] = []
    cls = ext.operators.HI3DGEN_OT_generate
    original = cls.execute

    def execute(self, context):
        result = original(self, context)
        seen.append(set(result))
        return result

    monkeypatch.setattr(cls, "execute", execute)
    props = bpy.context.window_manager.hi3dgen
    props.view_camera = False  # these tests count what a run adds; test_placement.py tests the view camera
    yield seen
    props.view_camera = True


def user_scene() -> dict[str, Any]:
    """A scene with the user's own work in it (including a Hi3DGen collection from an earlier run)."""
    clear_scene()
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("Existing")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    mesh.materials.append(bpy.data.materials.new("Existing material"))
    bpy.data.images.new("Existing image", 4, 4)
    collection = bpy.data.collections.new("Hi3DGen")
    scene.collection.children.link(collection)
    obj = bpy.data.objects.new("Existing", mesh)
    collection.objects.link(obj)
    view_layer = bpy.context.view_layer
    view_layer.update()
    obj.select_set(True)
    view_layer.objects.active = obj
    return scene_state()


def scene_state() -> dict[str, Any]:
    """Names (and so counts) of every datablock kind a generation touches, plus selection and users."""
    state: dict[str, Any] = dict(scene_snapshot())
    view_layer = bpy.context.view_layer
    state["active"] = view_layer.objects.active.name if view_layer.objects.active else None
    state["selected"] = sorted(o.name for o in view_layer.objects.selected)
    state["in_hi3dgen"] = sorted(o.name for o in bpy.data.collections["Hi3DGen"].objects)
    state["users"] = {m.name: m.users for m in bpy.data.meshes}
    return state


def generate_fails(picture: Any, verdicts: list[set[str]], **kwargs: Any) -> str:  # noqa: F811
    """Run the operator, expect CANCELLED with an ERROR report; return the report's text."""
    kwargs.setdefault("params_json", FAST)
    with pytest.raises(RuntimeError) as info:  # an ERROR report raises in background mode
        bpy.ops.hi3dgen.generate(image_path=str(picture), **kwargs)
    assert verdicts[-1] == {"CANCELLED"}
    return str(info.value)


def assert_readable(text: str, failure: Any, *words: str) -> None:
    """The report states what happened and what to do, in a sentence or two (no traceback)."""
    assert failure.message and failure.hint, "both what happened and what to do"
    assert failure.message in text and failure.hint in text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    assert "Traceback" not in text and len(text) < 400


def zombie_children() -> list[int]:
    """Children of this process that ended but were never reaped."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
            if state == "Z" and int(ppid) == os.getpid():
                found.append(int(entry.name))
    return found


def assert_no_backend_left() -> None:
    deadline = time.monotonic() + 60.0  # returns as soon as they are gone
    while (backend_children() or zombie_children()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend_children() == [], "the broken backend was stopped"
    assert zombie_children() == [], "and reaped"


def next_generation_works(ext, picture, before: dict[str, Any], verdicts: list[set[str]]) -> None:  # noqa: F811
    """The following generation succeeds and adds exactly one object to the untouched scene."""
    assert bpy.ops.hi3dgen.generate(image_path=str(picture), params_json=FAST) == {"FINISHED"}
    assert verdicts[-1] == {"FINISHED"}
    after = scene_state()
    (new,) = set(after["objects"]) - set(before["objects"])
    assert new.startswith(picture.stem) and set(before["objects"]) <= set(after["objects"])
    assert after["in_hi3dgen"] == sorted([*before["in_hi3dgen"], new])
    assert ext.generation.last_error() is None


# ------------------------------------------------------------------------------------------ faults

# fault spec, the add-on's failure code, words the user reads
KILLING_FAULTS = [
    ("crash@start", "backend_unavailable", ["failed to start (exit code 70)", "See the log"]),
    ("crash@relief", "backend_died", ["stopped unexpectedly", "exited with code 70", "restarts"]),
    ("exit_mid_mesh@mesh", "backend_died", ["stopped unexpectedly", "exited with code 70", "restarts"]),
    ("garbage@mesh", "protocol", ["Garbled", "restarted"]),
    ("truncated_frame@mesh", "backend_died", ["stopped unexpectedly", "in the middle of a reply", "restarts"]),
    ("oversized_frame@mesh", "protocol", ["frame too large", "restarted"]),
]


@pytest.mark.parametrize(("fault", "code", "words"), KILLING_FAULTS, ids=[f[0] for f in KILLING_FAULTS])
def test_fault_is_reported_and_the_next_generation_works(ext, picture, fault_once, verdicts, fault, code,  # noqa: F811
                                                         words):
    spawns = fault_once(fault)
    before = user_scene()
    text = generate_fails(picture, verdicts)
    failure = ext.generation.last_error()
    assert failure.code == code
    assert_readable(text, failure, *words)
    assert scene_state() == before
    assert_no_backend_left()
    next_generation_works(ext, picture, before, verdicts)
    assert len(spawns.envs) == 2, "one faulty start, one fresh start"
    assert "HI3DGEN_FAULT" not in spawns.envs[1]


def test_hang_is_stopped_and_the_next_generation_works(ext, picture, fault_once, verdicts,  # noqa: F811
                                                        monkeypatch):
    """A frozen backend is caught by the hang timer, counted from the last frame heard (not from start-up)."""
    spawns = fault_once("hang@relief")
    watch = watch_hangs(monkeypatch, ext.job.Job)
    before = user_scene()
    prefs(ext).hang_timeout = 3.0  # the smallest the preference allows
    try:
        with backends_killed_after(SAFETY_SECONDS):
            text = generate_fails(picture, verdicts)
    finally:
        prefs(ext).hang_timeout = 15.0
    failure = ext.generation.last_error()
    assert failure.code == "hung", f"not caught by the hang timer: {failure.code} {failure.message}"
    assert watch.silence is not None and watch.silence >= 3.0, "it waited the whole timeout after the last frame"
    assert_readable(text, failure, "stopped responding for 3 s", "try again", "hang timeout")
    assert scene_state() == before
    assert_no_backend_left()
    next_generation_works(ext, picture, before, verdicts)
    assert len(spawns.envs) == 2


def test_out_of_memory_keeps_a_healthy_backend(ext, picture, fault_once, verdicts):  # noqa: F811
    """An OOM is a clean error: the backend frees its models and keeps serving; nothing is restarted."""
    spawns = fault_once("oom@sampling", test_engines=True)  # test-slow reports 'sampling', relief does not
    before = user_scene()
    text = generate_fails(picture, verdicts, engine="test-slow", params_json='{"steps": 2, "step_seconds": 0}')
    failure = ext.generation.last_error()
    assert failure.code == "out_of_memory"
    assert_readable(text, failure, "Ran out of memory", "Lower the resolution")
    assert scene_state() == before
    proc = ext.generation.running_backend()
    assert proc is not None and backend_children() == [proc.proc.pid], "the same backend, nothing else"
    assert proc.ping().busy is False
    next_generation_works(ext, picture, before, verdicts)
    assert ext.generation.running_backend() is proc and len(spawns.envs) == 1


def test_fault_on_the_interactive_path(ext, picture, fault_once):  # noqa: F811
    """The timer path (what the UI runs): a crash mid-stream, then a fresh backend for the next run."""
    spawns = fault_once("exit_mid_mesh@mesh")
    before = user_scene()
    settings = ext.settings.GenerateSettings(image_name="disc", image_bytes=picture.read_bytes(),
                                             params={"resolution": 32})
    options, placement = ext.settings.BuildOptions(), ext.mesh_builder.Placement()
    for attempt in range(2):
        run = ext.generation.start(bpy.context, settings, options, placement)
        deadline = time.monotonic() + 60
        while ext.generation.pump() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.closed
        if attempt == 0:
            failure = ext.generation.last_error()
            assert failure.code == "backend_died" and "restarts" in failure.hint
            assert run.objects is None and scene_state() == before
            assert_no_backend_left()
    assert ext.generation.last_error() is None and run.objects is not None and len(run.objects) == 1
    assert len(spawns.envs) == 2
    assert "HI3DGEN_FAULT" in spawns.envs[0] and "HI3DGEN_FAULT" not in spawns.envs[1]
    assert os.environ.get("HI3DGEN_FAULT") is None
