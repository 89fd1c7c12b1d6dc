"""End to end in real Blender (bpy module, headless): build the zip, validate, install, generate, fail safely.

The operator talks to the real backend (``python -m backend serve`` from the installed extension's bundled
``backend/``) run by the backend venv; faults are injected with the backend's own HI3DGEN_FAULT switch.
One Blender session and one installed extension serve the whole module.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.blender.blender_session import (
    backend_children,
    backends_killed_after,
    bpy,
    clear_scene,
    scene_snapshot,
    write_png,
)

addon_utils = importlib.import_module("addon_utils")  # Blender's own module, importable once bpy is

REPO = Path(__file__).resolve().parents[2]
BACKEND_PYTHON = Path(os.environ.get("HI3DGEN_TEST_BACKEND_PYTHON", REPO / ".venv" / "bin" / "python"))
MODULE = "bl_ext.user_default.hi3dgen"

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO))
    import build_addon

    zip_path = build_addon.build(tmp_path_factory.mktemp("dist"))
    build_addon.validate(zip_path, sys.executable)  # raises SystemExit when Blender's validator refuses it
    return zip_path


@pytest.fixture(scope="module")
def ext(built_zip, tmp_path_factory):
    """The extension installed from the zip and enabled; disabled again (and checked) at the end."""
    saved = {k: os.environ.get(k) for k in ("HI3DGEN_PYTHON", "HI3DGEN_FAULT", "HI3DGEN_TEST_ENGINES")}
    os.environ["HI3DGEN_PYTHON"] = str(BACKEND_PYTHON)
    result = bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(built_zip),
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    module = importlib.import_module(MODULE)
    yield module
    addon_utils.disable(MODULE, default_set=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    return write_png(tmp_path_factory.mktemp("img") / "disc.png")


@pytest.fixture
def backend_env(ext):
    """Set backend environment switches for one test; the backend restarts to pick them up."""

    def apply(**env: str) -> None:
        ext.generation.stop_backend()
        for key in ("HI3DGEN_FAULT", "HI3DGEN_TEST_ENGINES"):
            os.environ.pop(key, None)
        os.environ.update(env)

    yield apply
    apply()


@pytest.fixture
def spy(ext, monkeypatch):
    """Records the meshes the add-on received before it builds them."""
    seen: list[tuple[str, dict]] = []
    original = ext.mesh_builder.add_result

    def add_result(context, meshes, *args, **kwargs):
        seen.extend(meshes)
        return original(context, meshes, *args, **kwargs)

    monkeypatch.setattr(ext.mesh_builder, "add_result", add_result)
    return seen


def prefs(ext):
    return bpy.context.preferences.addons[MODULE].preferences


# ------------------------------------------------------------------------------------------ packaging


def test_zip_layout(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "wire.py", "backend/__init__.py", "backend/protocol.py",
            "backend/__main__.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests") or n.endswith(".pyc")]
    assert not [n for n in names if "/" in n and not n.startswith("backend/")]


def test_installed_and_registered(ext):
    assert MODULE in bpy.context.preferences.addons
    assert hasattr(bpy.types, "HI3DGEN_PT_main") and hasattr(bpy.types, "HI3DGEN_OT_generate")
    assert bpy.context.window_manager.hi3dgen.engine in ("relief", "hi3dgen")
    assert ext.wire.protocol.__name__ == f"{MODULE}.backend.protocol", "uses the bundled protocol module"
    assert callable(ext.api.generate)


# ------------------------------------------------------------------------------------------ generation


def test_operator_generates_one_object(ext, picture, spy):
    clear_scene()
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    before = scene_snapshot()
    result = bpy.ops.hi3dgen.generate(image_path=str(picture), engine="relief", seed=0,
                                      params_json='{"resolution": 64}')
    assert result == {"FINISHED"}
    after = scene_snapshot()
    assert after["objects"] == sorted([*before["objects"], "disc", "disc view"])  # the estimated view's camera
    (name, arrays) = spy[-1]
    obj = bpy.data.objects["disc"]
    assert len(obj.data.vertices) == len(arrays["vertices"])
    assert len(obj.data.polygons) == len(arrays["faces"])
    assert len(obj.data.edges) == int(arrays["corner_edge"].max()) + 1, "the backend's edges (protocol 5) arrive"
    assert obj.users_collection[0].name == "Hi3DGen"
    assert obj.select_get() and bpy.context.view_layer.objects.active == obj
    assert tuple(obj.location) == pytest.approx((1.0, 2.0, 3.0))
    assert ext.generation.running_backend() is not None, "kept running for the next generation"


def test_a_million_face_result_keeps_the_backends_edges(ext, picture, spy, capfd):
    """The compiled edge pass's corner edges (a mesh past 100 k faces) pass the add-on's check in real Blender."""
    clear_scene()
    result = bpy.ops.hi3dgen.generate(image_path=str(picture), engine="relief", seed=0,
                                      params_json='{"resolution": 1024, "faces": 0}')
    assert result == {"FINISHED"}
    (name, arrays) = spy[-1]
    mesh = bpy.data.objects[name].data
    assert len(arrays["faces"]) > 1_000_000 and len(mesh.polygons) == len(arrays["faces"])
    assert "refused" not in capfd.readouterr().err
    assert len(mesh.edges) == int(arrays["corner_edge"].max()) + 1
    assert not mesh.validate(verbose=False), "Blender found nothing to fix"


def test_material_variant(ext, picture):
    clear_scene()
    result = bpy.ops.hi3dgen.generate(image_path=str(picture), params_json='{"resolution": 48}',
                                      with_material=True)
    assert result == {"FINISHED"}
    obj = bpy.data.objects["disc"]
    tree = obj.active_material.node_tree
    (tex,) = [n for n in tree.nodes if n.type == "TEX_IMAGE" and n.outputs["Color"].links
              and n.outputs["Color"].links[0].to_node.type == "NORMAL_MAP"]  # the other one: the base colour
    assert tex.image.colorspace_settings.name == "Non-Color" and tex.image.packed_file is not None
    (nmap,) = [n for n in tree.nodes if n.type == "NORMAL_MAP"]
    assert tex.outputs["Color"].links[0].to_node == nmap
    assert nmap.outputs["Normal"].links[0].to_socket.name == "Normal"
    assert nmap.outputs["Normal"].links[0].to_node.type == "BSDF_PRINCIPLED"
    assert obj.data.uv_layers.get(nmap.uv_map) is not None


def test_api_generate_and_its_errors(ext, picture):
    clear_scene()
    obj = ext.api.generate(str(picture), engine="relief", seed=1, resolution=32, shading="FLAT")
    assert obj.name == "disc" and obj.type == "MESH" and not obj.data.polygons[0].use_smooth
    before = scene_snapshot()
    with pytest.raises(ext.api.GenerationError) as info:
        ext.api.generate(str(picture), engine="relief", no_such_param=1)
    assert info.value.code == "bad_input" and "no_such_param" in str(info.value)
    assert scene_snapshot() == before


def test_api_generate_with_a_mask_image(ext, picture, tmp_path):
    import numpy as np

    clear_scene()
    mask = np.zeros((96, 96, 4), np.uint8)
    mask[20:76, 38:58] = 255  # a tall strip inside the disc: white and opaque
    mask_path = tmp_path / "mask.png"
    mask_path.write_bytes(ext.sources.encode_png(mask))
    round_obj = ext.api.generate(str(picture), engine="relief", resolution=32)
    strip = ext.api.generate(str(picture), engine="relief", resolution=32, mask_path=str(mask_path))
    x, _, z = strip.dimensions  # image right -> +X, image up -> +Z
    assert z > 2.0 * x and abs(round_obj.dimensions[0] - round_obj.dimensions[2]) < 0.1
    with pytest.raises(ext.api.GenerationError) as info:
        ext.api.generate(str(picture), engine="relief", mask_path=str(tmp_path / "missing.png"))
    assert info.value.code == "bad_input" and "Mask: " in str(info.value) and "missing.png" in str(info.value)


def start_slow_run(ext, picture, backend_env):  # noqa: ANN001, ANN201 - fixtures and an ActiveRun
    """An interactive run of the slow test engine (minutes long: only a cancel ends it), driven by hand until
    it is sampling (cancellable)."""
    backend_env(HI3DGEN_TEST_ENGINES="1")
    clear_scene()
    settings = ext.settings.GenerateSettings(image_name="disc", image_bytes=picture.read_bytes(),
                                             engine="test-slow", params={"steps": 10_000, "step_seconds": 0.02})
    run = ext.generation.start(bpy.context, settings, ext.settings.BuildOptions(), ext.mesh_builder.Placement())
    deadline = time.monotonic() + 60
    while run.job.stage != "sampling" and time.monotonic() < deadline:
        ext.generation.pump()
        time.sleep(0.02)
    assert run.job.stage == "sampling" and 0.0 <= run.job.fraction < 1.0
    return run


def test_timer_path_runs_and_can_be_cancelled(ext, picture, backend_env):
    """The interactive path: start, then the timer function (driven here by hand) until the end."""
    run = start_slow_run(ext, picture, backend_env)
    before = scene_snapshot()
    assert ext.generation.cancel()
    while ext.generation.pump() is not None:  # ends: a backend that ignores the cancel is killed after a grace
        time.sleep(0.02)
    assert run.closed and ext.generation.last_error().code == "cancelled"
    assert run.job.step < run.job.total - 1, "sampling stopped before its last step"
    assert scene_snapshot() == before
    assert ext.generation.running_backend() is not None, "a cancel keeps the backend"


def test_escape_in_the_modal_operator_cancels(ext, picture, backend_env):
    """Esc reaches the interactive operator's modal handler, which cancels the run it follows."""
    from types import SimpleNamespace

    start_slow_run(ext, picture, backend_env)
    before = scene_snapshot()
    modal = ext.operators.HI3DGEN_OT_generate.modal
    escape = SimpleNamespace(type="ESC", value="PRESS")
    assert modal(SimpleNamespace(), bpy.context, escape) == {"RUNNING_MODAL"}
    while ext.generation.pump() is not None:
        time.sleep(0.02)
    assert ext.generation.last_error().code == "cancelled" and scene_snapshot() == before


def test_timer_path_builds_and_can_stop_the_backend(ext, picture):
    """keep_running off: the backend ends after the generation."""
    clear_scene()
    prefs(ext).keep_running = False
    try:
        params = {"resolution": 48, "ss_steps": 5}  # ss_steps: not a relief parameter, dropped by the job
        settings = ext.settings.GenerateSettings(image_name="disc", image_bytes=picture.read_bytes(),
                                                 params=params, strict_params=False)
        options, placement = ext.settings.BuildOptions(shading="FLAT"), ext.mesh_builder.Placement()
        run = ext.generation.start(bpy.context, settings, options, placement)
        deadline = time.monotonic() + 60
        while ext.generation.pump() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        prefs(ext).keep_running = True
    assert run.closed and run.objects == ["disc"] and ext.generation.last_error() is None
    assert "disc" in bpy.data.objects and "faces" in ext.generation.last_result()
    assert ext.generation.running_backend() is None
    time.sleep(0.1)
    assert backend_children() == []


@pytest.mark.parametrize(("fault", "code", "words"), [
    ("crash@mesh", "backend_died", "stopped unexpectedly"),
    ("garbage@mesh", "protocol", "Garbled"),
    ("hang@mesh", "hung", "stopped responding"),
])
def test_backend_faults_leave_the_scene_unchanged(ext, picture, backend_env, fault, code, words):
    backend_env(HI3DGEN_FAULT=fault)
    prefs(ext).hang_timeout = 3.0
    clear_scene()
    before = scene_snapshot()
    try:  # the watchdog is only a net for a hang detector that never fires; the test then fails, not hangs
        with backends_killed_after(300.0), pytest.raises(RuntimeError, match=words):  # an ERROR report raises
            bpy.ops.hi3dgen.generate(image_path=str(picture), params_json='{"resolution": 64}')
    finally:
        prefs(ext).hang_timeout = 15.0
    error = ext.generation.last_error()
    assert error.code == code and words in error.message and error.hint
    assert scene_snapshot() == before
    time.sleep(0.1)
    assert backend_children() == [], "the broken backend was stopped"


def test_missing_interpreter_is_explained(ext, picture, monkeypatch):
    ext.generation.stop_backend()
    monkeypatch.setenv("HI3DGEN_PYTHON", "")
    prefs(ext).backend_python = ""
    with pytest.raises(RuntimeError, match="No backend Python is set"):
        bpy.ops.hi3dgen.generate(image_path=str(picture))
    assert "No backend Python is set" in ext.generation.last_error().message
    assert "No backend Python is set" in ext.generation.config_problem()


def test_unreadable_remote_command_is_a_settings_error(ext, picture):
    ext.generation.stop_backend()
    prefs(ext).remote_command = "ssh 'gpu-box"
    try:
        with pytest.raises(RuntimeError, match="Remote Command preference cannot be read"):  # reported ERROR
            bpy.ops.hi3dgen.check_backend()
        assert "Remote Command preference cannot be read" in prefs(ext).check_result
        assert "Remote Command" in texts(draw_panel(ext.ui.HI3DGEN_PT_main, bpy.context))
        with pytest.raises(RuntimeError, match="Remote Command"):
            bpy.ops.hi3dgen.generate(image_path=str(picture))
        assert backend_children() == []
    finally:
        prefs(ext).remote_command = ""
        prefs(ext).check_result = ""


def test_check_backend_and_unregister_stop_everything(ext):
    bpy.ops.hi3dgen.check_backend()
    text = prefs(ext).check_result
    assert re.search(r"^Relief.*: ready$", text, re.MULTILINE) and "Answered a ping" in text
    assert backend_children() != []
    addon_utils.disable(MODULE, default_set=True)
    assert not hasattr(bpy.types, "HI3DGEN_PT_main") and not hasattr(bpy.types.WindowManager, "hi3dgen")
    time.sleep(0.1)
    assert backend_children() == []
    addon_utils.enable(MODULE, default_set=True)  # the module fixture disables it again at the end
    assert hasattr(bpy.types, "HI3DGEN_PT_main")


class Recorder:
    """Stands in for UILayout headless (panels cannot draw without a window): records what is drawn."""

    def __init__(self, log: list) -> None:
        self.log = log

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.log.append((name, args, kwargs))
            return Recorder(self.log)
        return call


def draw_panel(cls, context) -> list:
    log: list = []
    fake = type("FakePanel", (), {})()
    fake.layout = Recorder(log)
    for name in dir(cls):
        if name.startswith("_draw"):
            setattr(fake, name, getattr(cls, name).__get__(fake))
    cls.draw(fake, context)
    return log


def texts(log: list) -> str:
    return "\n".join(str(kw.get("text", "")) for _, _, kw in log)


def test_panels_draw_every_state(ext, picture, monkeypatch):
    monkeypatch.setenv("HI3DGEN_PYTHON", "")
    prefs(ext).backend_python = ""
    log = draw_panel(ext.ui.HI3DGEN_PT_main, bpy.context)
    assert "No backend Python is set." in texts(log)
    assert ("operator", ("hi3dgen.generate",), {"icon": "MESH_MONKEY"}) in log
    monkeypatch.setenv("HI3DGEN_PYTHON", str(BACKEND_PYTHON))
    bpy.context.window_manager.hi3dgen.engine = "hi3dgen"
    log = draw_panel(ext.ui.HI3DGEN_PT_main, bpy.context)
    props = [args[1] for name, args, _ in log if name == "prop"]
    assert not [args for name, args, _ in log if name == "operator" and args == ("preferences.addon_show",)]
    assert "ss_steps" in props and "resolution" not in props
    bpy.context.window_manager.hi3dgen.engine = "relief"
    settings = ext.settings.GenerateSettings(image_name="disc", image_bytes=picture.read_bytes())
    options, placement = ext.settings.BuildOptions(), ext.mesh_builder.Placement()
    run = ext.generation.start(bpy.context, settings, options, placement)
    log = draw_panel(ext.ui.HI3DGEN_PT_main, bpy.context)
    assert [name for name, _, _ in log].count("progress") == 1
    run.job.cancel()
    while ext.generation.pump() is not None:
        time.sleep(0.02)
    assert "cancelled" in texts(draw_panel(ext.ui.HI3DGEN_PT_main, bpy.context))
    assert "Running, pid" in texts(draw_panel(ext.ui.HI3DGEN_PT_backend, bpy.context))
    prefs_log: list = []
    ext.preferences.HI3DGEN_AddonPreferences.draw(type("P", (), {"layout": Recorder(prefs_log), **{
        k: getattr(prefs(ext), k) for k in ("allow_downloads", "check_result", "remote_command", "remote_shell")}})(),
        bpy.context)
    assert ("operator", ("hi3dgen.check_backend",), {"icon": "PLUGIN"}) in prefs_log


QUIT_SCRIPT = """
import importlib, os, sys
import bpy
bpy.ops.extensions.package_install_files(repo="user_default", filepath=sys.argv[1], enable_on_install=True)
ext = importlib.import_module("bl_ext.user_default.hi3dgen")
proc = ext.generation.backend(bpy.context)
print("BACKEND_PID", proc.proc.pid, flush=True)
if sys.argv[2] == "crash":
    os._exit(3)  # no atexit, no cleanup: as if Blender crashed
sys.exit(0)  # a normal quit: the add-on's atexit handler ends the backend
"""


@pytest.mark.parametrize("how", ["quit", "crash"])
def test_quitting_or_crashing_blender_ends_the_backend(built_zip, tmp_path, how):
    """Blender's own process ends (normally, or abruptly): its backend must not outlive it."""
    import subprocess

    import psutil

    env = {**os.environ, "HI3DGEN_PYTHON": str(BACKEND_PYTHON), "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    done = subprocess.run([sys.executable, "-c", QUIT_SCRIPT, str(built_zip), how], env=env,
                          capture_output=True, text=True, timeout=120)
    match = re.search(r"BACKEND_PID (\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    pid = int(match.group(1))
    deadline = time.monotonic() + 120  # after a crash the backend sees its input close and exits itself
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"backend {pid} outlived Blender ({how})"
        time.sleep(0.1)
