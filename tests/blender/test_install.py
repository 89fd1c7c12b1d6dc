"""Install Backend in real Blender (bpy module, headless), through the installed extension zip.

From a local wheel folder (the pinned requirements and the torch CPU wheel, fetched once into
.pytest_cache/hi3dgen-wheels and reused) into the session's temporary user folder: an install cancelled
during torch leaves nothing, the next one completes and gives a working backend (Check Backend: relief
ready; a relief generation makes one mesh). A refusing index fails readably and leaves nothing either.
Slow (a real venv and a pip install of torch, about three minutes on a busy machine), so there is one full
install only; marked ``slow``, and it runs in ``make test``.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.blender.blender_session import backends_killed_after, bpy, write_png

addon_utils = importlib.import_module("addon_utils")

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "requirements" / "backend-pins.txt"
WHEELS = REPO / ".pytest_cache" / "hi3dgen-wheels"
TORCH_WHEELS = "/opt/wheels/torch-2.13.0+cpu-cp311-*.whl"
MODULE = "bl_ext.user_default.hi3dgen"
REFUSING_INDEX = "http://127.0.0.1:9/simple"  # the discard port: nothing listens, the connection is refused

pytestmark = pytest.mark.slow


def _download_wheels() -> Path:
    """The wheel folder for the offline install, made once per pins version (a stamp holds their hash)."""
    digest = hashlib.sha256(PINS.read_bytes()).hexdigest()
    stamp = WHEELS / "pins.sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return WHEELS
    partial = WHEELS.with_name(WHEELS.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    local_torch = sorted(glob.glob(TORCH_WHEELS))
    torch = local_torch[-1:] or ["torch==2.13.0", "--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(partial),
           "-r", str(PINS), *torch]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        pytest.skip(f"cannot fetch the wheels for the offline install (no package index?): {out.stderr[-500:]}")
    (partial / "pins.sha256").write_text(digest)
    shutil.rmtree(WHEELS, ignore_errors=True)
    partial.rename(WHEELS)
    return WHEELS


@pytest.fixture(scope="module")
def wheels() -> Path:
    return _download_wheels()


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO))
    import build_addon

    return build_addon.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def ext(built_zip):
    """The extension installed from the zip, with no HI3DGEN_* variable overriding its preferences."""
    saved = {k: os.environ.pop(k, None) for k in ("HI3DGEN_PYTHON", "HI3DGEN_WHEELS", "HI3DGEN_INDEX_URL",
                                                  "HI3DGEN_FAULT", "HI3DGEN_TEST_ENGINES", "HI3DGEN_PIP_ARGS")}
    os.environ["HI3DGEN_PIP_ARGS"] = "--no-compile"  # the backend compiles what it imports when it starts
    result = bpy.ops.extensions.package_install_files(repo="user_default", filepath=str(built_zip),
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    module = importlib.import_module(MODULE)
    yield module
    module.generation.stop_backend()
    for trash in glob.glob(glob.escape(module.install_ops.env_dir()) + ".trash*"):
        # a removed environment is deleted in the background: let that go on after this process ends
        if os.name == "posix":
            subprocess.Popen(["rm", "-rf", trash], start_new_session=True)
        else:
            shutil.rmtree(trash, ignore_errors=True)
    addon_utils.disable(MODULE, default_set=True)
    os.environ.pop("HI3DGEN_PIP_ARGS", None)
    os.environ.update({k: v for k, v in saved.items() if v is not None})


@pytest.fixture
def prefs(ext):
    p = bpy.context.preferences.addons[MODULE].preferences
    system = bpy.context.preferences.system
    online = system.use_online_access
    yield p
    system.use_online_access = online
    p.install_wheels = p.install_index_url = ""


class Recorder:
    """Stands in for a UILayout: records the texts drawn, so the draw functions run headless."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def __getattr__(self, name: str):
        def call(*args, **kw):
            self.texts.append(str(kw.get("text", args[1] if len(args) > 1 else "")))
            return Recorder(self.texts)

        return call


def drawn(ext, prefs) -> str:
    texts: list[str] = []
    ext.install_ui.draw_install(Recorder(texts), bpy.context, prefs)
    ext.install_ui.draw_panel(Recorder(texts), bpy.context, True)
    return "\n".join(texts)


def leftovers(ext) -> list[str]:
    env = ext.install_ops.env_dir()
    return [p for p in (env, env + ".partial", env + ".old") if os.path.exists(p)]


def test_the_zip_carries_the_pins(built_zip):
    with zipfile.ZipFile(built_zip) as zf:
        assert zf.read("backend-pins.txt") == PINS.read_bytes()


def test_a_refusing_index_fails_readably_and_leaves_nothing(ext, prefs):
    prefs.install_index_url = REFUSING_INDEX
    bpy.context.preferences.system.use_online_access = False
    with pytest.raises(RuntimeError, match="online access is off"):  # an ERROR report raises from bpy.ops
        bpy.ops.hi3dgen.install_backend()
    assert ext.install_ops.last_state().error.code == "offline", "no network use while online access is off"
    assert "Wheel Folder" in drawn(ext, prefs)

    bpy.context.preferences.system.use_online_access = True
    with pytest.raises(RuntimeError, match=re.escape(f"The package index {REFUSING_INDEX} refused")):
        bpy.ops.hi3dgen.install_backend()
    error = ext.install_ops.last_state().error
    assert error.code == "index_refused" and REFUSING_INDEX in error.message
    assert "Package Index URL" in error.hint and "Connection refused" in error.detail
    assert error.message in drawn(ext, prefs), "the preferences show the failure"
    assert "Connection refused" in Path(ext.install_ops.log_path()).read_text()
    assert leftovers(ext) == [] and prefs.backend_python == ""


def test_cancel_mid_install_then_install_gives_a_working_backend(ext, prefs, wheels, tmp_path):
    prefs.install_wheels = str(wheels)
    inst = ext.install_ops.start(bpy.context, timer=False)
    while not inst.snapshot().finished and not (inst.snapshot().stage == "torch" and inst.snapshot().detail):
        inst.wait(0.2)
    assert inst.snapshot().stage == "torch", inst.snapshot()
    assert ext.install_ops.cancel()
    while ext.install_ops.pump() is not None:  # the interactive timer's step, driven here (timers never fire)
        inst.wait(0.2)
    state = ext.install_ops.last_state()
    assert state.finished and state.cancelled and not state.ok and state.error is None
    assert ext.install_ops.running() is None
    assert leftovers(ext) == [] and prefs.backend_python == ""

    with backends_killed_after(900):
        assert bpy.ops.hi3dgen.install_backend() == {"FINISHED"}
        python = ext.install_ops.last_state().python
        assert prefs.backend_python == python and python.startswith(ext.install_ops.user_dir())
        assert ext.install_ops.env_status(max_age=0).state == "ready"
        assert re.search(r"relief.*: ready", prefs.check_result, re.IGNORECASE), prefs.check_result
        before = {o.name for o in bpy.data.objects}
        result = bpy.ops.hi3dgen.generate(image_path=str(write_png(tmp_path / "disc.png")), engine="relief",
                                          params_json='{"resolution": 48}')
        assert result == {"FINISHED"}, ext.generation.last_error()
        made = [o for o in bpy.data.objects if o.name not in before and o.type == "MESH"]  # + its view camera
        assert len(made) == 1 and len(made[0].data.polygons) > 0
        assert ext.generation.running_backend().config.python == python, "the new environment's backend"


def test_an_older_environment_is_offered_a_repair_and_remove_deletes_it(ext, prefs):
    env = ext.install_ops.env_dir()
    marker = ext.install_env.read_marker(env)
    assert marker is not None, "the install above made the environment"
    ext.install_env.write_marker(env, {**marker, "addon_version": "0.0.1"})
    status = ext.install_ops.env_status(max_age=0)
    assert status.state == "outdated" and status.needs_repair and "0.0.1" in status.message
    assert "Repair Backend" in drawn(ext, prefs)
    assert bpy.ops.hi3dgen.remove_backend() == {"FINISHED"}
    assert leftovers(ext) == [] and prefs.backend_python == "", "renamed away at once, deleted in the background"
    assert ext.generation.running_backend() is None
    assert ext.install_ops.env_status(max_age=0).state == "missing"
