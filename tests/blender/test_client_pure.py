"""The add-on's bpy-free layer: settings, the backend process client and the job state machine.

Driven against tests/blender/fake_backend.py, which speaks the real protocol and misbehaves on request.
No bpy is imported here.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_addon.client import BackendManager, BackendProcess, BackendUnavailable
from blender_addon.job import Job, JobFailed
from blender_addon.settings import (
    BackendConfig,
    GenerateSettings,
    checked_params,
    config_problem,
    engine_params,
    find_backend_root,
    parse_params_json,
    parse_prefix,
    prefix_is_shell,
    python_problem,
    resolve_python,
)
from blender_addon.wire import protocol as P

from .hang_watch import watch_hangs

REPO = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_backend.py")
BPY_FREE = ("settings.py", "client.py", "job.py", "wire.py", "files.py", "mesh_edges.py", "__init__.py")
SAFETY_SECONDS = 120.0  # how long a wait may run before the test gives up; never an expected duration


def fake_config(mode: str, hang_timeout: float = 15.0) -> BackendConfig:
    return BackendConfig(python=sys.executable, backend_root=str(REPO),
                         argv=(sys.executable, str(FAKE), mode),
                         hello_timeout=20.0, hang_timeout=hang_timeout)


def request(**kw: object) -> GenerateSettings:
    return GenerateSettings(image_name="cat", image_bytes=b"\x89PNG fake", **kw)  # type: ignore[arg-type]


@pytest.fixture
def backends():
    started: list[BackendProcess] = []

    def start(mode: str, hang_timeout: float = 15.0) -> BackendProcess:
        proc = BackendProcess(fake_config(mode, hang_timeout))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        assert proc.proc.poll() is not None


# ------------------------------------------------------------------------------------------- settings


def test_env_overrides_preference():
    assert resolve_python("/pref/python", {"HI3DGEN_PYTHON": "/env/python"}) == "/env/python"
    assert resolve_python("/pref/python", {}) == "/pref/python"
    assert resolve_python("", {}) == ""


def test_missing_python_says_what_to_do(tmp_path):
    assert "Backend Python" in python_problem("")
    assert "does not exist" in python_problem(str(tmp_path / "nope"))
    assert python_problem(sys.executable) == ""
    assert python_problem("/remote/python", ("ssh", "box")) == ""


def test_command_and_environment():
    local = BackendConfig(python="/venv/bin/python", backend_root="/ext", device="cuda", weights_dir="/w")
    assert local.command() == ["/venv/bin/python", "-m", "backend", "serve"]
    env = local.process_env({"PATH": "/bin", "PYTHONHOME": "/blender/python", "PYTHONPATH": "/old"})
    assert env["PYTHONPATH"].split(":")[0] == "/ext" and "PYTHONHOME" not in env
    assert env["HI3DGEN_DEVICE"] == "cuda" and env["HI3DGEN_WEIGHTS"] == "/w"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HI3DGEN_ALLOW_DOWNLOAD"] == "0"
    remote = BackendConfig(python="python3", backend_root="/ext", prefix=("ssh", "box"), remote_root="/srv/h")
    argv = remote.command()
    assert argv[:2] == ["ssh", "box"] and len(argv) == 3  # one line for the remote shell
    words = shlex.split(argv[2])
    assert words[0] == "env" and "PYTHONPATH=/srv/h" in words
    assert words[-4:] == ["python3", "-m", "backend", "serve"]
    spaced = BackendConfig(python="/opt/my env/python", backend_root="/ext", prefix=("ssh", "box"),
                           weights_dir="/data/my weights")
    assert "'HI3DGEN_WEIGHTS=/data/my weights'" in spaced.command()[2]
    assert "'/opt/my env/python'" in spaced.command()[2]
    direct = BackendConfig(python="/opt/my env/python", backend_root="/ext", prefix=("nice", "-n", "10"))
    assert direct.command()[:4] == ["nice", "-n", "10", "env"]
    assert "/opt/my env/python" in direct.command()  # no shell in between: no quotes


@pytest.mark.parametrize("prefix, mode, shell", [
    (("ssh", "box"), "AUTO", True),
    (("timeout", "60", "ssh", "box"), "AUTO", True),
    (("env", "/usr/bin/ssh", "-p", "2222", "box"), "AUTO", True),
    (("autossh", "-M", "0", "box"), "AUTO", True),
    (("C:\\Windows\\System32\\wsl.exe",), "AUTO", True),
    (("wsl", "--exec"), "AUTO", False),
    (("nice", "-n", "10"), "AUTO", False),
    (("env", "FOO=1"), "AUTO", False),
    (("docker", "exec", "-i", "box"), "AUTO", False),
    (("my-gpu-wrapper",), "AUTO", False),
    (("my-gpu-wrapper",), "SHELL", True),
    (("ssh", "box"), "DIRECT", False),
    ((), "SHELL", False),
])
def test_remote_shell_detection(prefix, mode, shell):
    assert prefix_is_shell(prefix, mode) is shell


def test_unreadable_prefix_is_a_settings_problem():
    prefix, problem = parse_prefix("ssh 'gpu box")
    assert prefix == () and "Remote Command" in problem and "quotes" in problem
    assert parse_prefix("  ") == ((), "")
    assert parse_prefix("timeout 60 ssh 'gpu box'") == (("timeout", "60", "ssh", "gpu box"), "")
    config = BackendConfig(python=sys.executable, backend_root=str(REPO), prefix_problem=problem)
    assert config_problem(config) == problem
    with pytest.raises(BackendUnavailable, match="Remote Command"):
        BackendProcess(config)
    equals = BackendConfig(python="/srv/a=b/python", backend_root="/ext", prefix=("ssh", "box"))
    assert "'='" in config_problem(equals)
    assert config_problem(BackendConfig(python=sys.executable, backend_root="/ext")) == ""


PRINT_ENV = "import os, sys; sys.stdout.write(os.environ['HI3DGEN_WEIGHTS'] + '|' + os.environ.get('FOO', ''))"


def fake_ssh(folder: Path, name: str = "ssh") -> Path:
    """A stand-in for ssh: drops the host and runs the rest as one line through ``sh -c``, as sshd does."""
    script = folder / name
    script.write_text('#!/bin/sh\nshift\nexec sh -c "$*"\n')
    script.chmod(0o755)
    return script


def hostile_folder(tmp_path: Path) -> tuple[str, Path]:
    marker = tmp_path / "INJECTED"
    return f"{tmp_path}/w $(touch {marker}) `touch {marker}` '\"; touch {marker}", marker


@pytest.mark.parametrize("how", ["timeout-ssh", "env-ssh", "wrapper", "nice", "env"])
def test_prefix_runs_only_the_backend_command(tmp_path, how):
    weights, marker = hostile_folder(tmp_path)
    ssh, wrapper = fake_ssh(tmp_path), fake_ssh(tmp_path, "gpu-run")
    prefix, mode = {
        "timeout-ssh": (("timeout", "60", str(ssh), "gpu-box"), "AUTO"),
        "env-ssh": (("env", str(ssh), "gpu-box"), "AUTO"),
        "wrapper": ((str(wrapper), "gpu-box"), "SHELL"),
        "nice": (("nice", "-n", "5"), "AUTO"),
        "env": (("env", "FOO=1"), "AUTO"),
    }[how]
    config = BackendConfig(python=sys.executable, backend_root=str(REPO), prefix=prefix, prefix_mode=mode,
                           weights_dir=weights, argv=(sys.executable, "-c", PRINT_ENV))
    done = subprocess.run(config.command(), env=config.process_env(dict(os.environ)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == weights + ("|1" if how == "env" else "|")  # the folder arrived byte for byte
    assert not marker.exists(), "a part of the weights folder ran as a command"


def test_backend_speaks_through_a_remote_shell(tmp_path):
    weights, marker = hostile_folder(tmp_path)
    config = dataclasses.replace(fake_config("ok"), prefix=(str(fake_ssh(tmp_path)), "gpu-box"),
                                 weights_dir=weights)
    proc = BackendProcess(config)
    try:
        assert proc.wait_hello(20.0).backend_version and proc.ping(20.0) is not None
    finally:
        proc.stop()
    assert proc.proc.poll() is not None and not marker.exists()


def test_timeouts_do_not_restart_the_backend():
    base = BackendConfig(python="/p", backend_root="/ext")
    assert base == BackendConfig(python="/p", backend_root="/ext", hang_timeout=60.0, hello_timeout=5.0)
    assert base != BackendConfig(python="/p", backend_root="/ext", device="cuda")


def test_engine_params_keep_declared_names_and_types():
    engine = {"params": [{"name": "resolution", "type": "int"}, {"name": "depth", "type": "float"}]}
    out = engine_params(engine, {"resolution": 128.0, "depth": 1, "ss_steps": 50})
    assert out == {"resolution": 128, "depth": 1.0}
    assert isinstance(out["resolution"], int) and isinstance(out["depth"], float)


def test_backend_root_found_in_repo_and_in_extension(tmp_path):
    assert find_backend_root(str(REPO / "blender_addon")) == str(REPO)
    ext = tmp_path / "hi3dgen"
    (ext / "backend").mkdir(parents=True)
    (ext / "backend" / "protocol.py").write_text("")
    assert find_backend_root(str(ext)) == str(ext)


def _imports(nodes: list[ast.stmt]) -> list[tuple[str, list[str]]]:
    """(module, names) of import statements among ``nodes`` and inside their try/except blocks."""
    out: list[tuple[str, list[str]]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.Try):
            out += _imports(node.body + [s for h in node.handlers for s in h.body])
    return out


def test_import_wall():
    """The add-on imports only backend.protocol (through wire.py), never torch; bpy-free modules stay so."""
    for path in sorted((REPO / "blender_addon").glob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        every = [n for n in ast.walk(tree) if isinstance(n, ast.stmt)]
        for module, names in _imports(every):
            assert not module.startswith("torch"), f"{path.name} imports {module}"
            if module in ("backend", ".backend") or module.startswith(("backend.", ".backend.")):
                assert path.name == "wire.py" and names == ["protocol"], f"{path.name} imports {module}"
        if path.name in BPY_FREE:  # module level only: register() may import bpy when Blender calls it
            for module, _ in _imports(tree.body):
                assert not module.startswith(("bpy", "mathutils")), f"{path.name} imports {module}"


# ------------------------------------------------------------------------------------------- jobs


def test_generate_roundtrip(backends):
    proc = backends("ok")
    hello = proc.wait_hello(20)
    assert hello.engines[0]["name"] == "relief"
    job = Job(proc, request(params={"resolution": 64, "ss_steps": 3}, strict_params=False))
    result = job.wait(30)
    (mesh,) = result.meshes
    assert mesh.name == "cat"
    assert mesh.arrays["vertices"].shape == (36, 3) and mesh.arrays["faces"].shape == (50, 3)
    assert mesh.arrays["uvs"].shape == (36, 2) and result.normal_map is not None
    assert result.normal_map.shape == (4, 6, 4)
    assert mesh.textures["normal"].dtype.name == "uint16" and mesh.textures["base_color"].shape == (4, 6, 4)
    (plain,) = Job(proc, request(want_textures=False)).wait(30).meshes
    assert plain.textures == {}
    assert "params={'resolution': 64}" in _log_until(proc, "generate")


def test_pump_drives_the_job_without_blocking(backends):
    proc = backends("ok")
    job = Job(proc, request())
    stages = set()
    deadline = time.monotonic() + 30
    while not job.pump() and time.monotonic() < deadline:
        stages.add(job.stage)
        time.sleep(0.01)
    assert job.state == "done" and job.result is not None
    assert job.status_text() == "Done"


@pytest.mark.parametrize(("mode", "code", "text"), [
    ("error", "bad_input", "no foreground"),
    ("crash", "backend_died", "exited with code 9"),
    ("garbage", "protocol", "Garbled"),
    ("bad_crc", "protocol", "checksum"),
    ("huge_mesh", "protocol", "out of range"),
    ("stray_texture", "protocol", "texture for unknown mesh 3"),
    ("bad_texture", "protocol", "normal texture must be uint16"),
    ("no_hello", "backend_unavailable", "failed to start"),
    ("busy", "busy", "wait for them to finish"),
    ("hello_garbage", "protocol", "Garbled"),
])
def test_failures_are_reported(backends, mode, code, text):
    proc = backends(mode)
    job = Job(proc, request())
    with pytest.raises(JobFailed) as info:
        job.wait(30)
    assert info.value.code == code, info.value.message
    assert text in info.value.message + info.value.hint
    if mode == "crash":
        assert "crashing now" in info.value.log
    if mode == "no_hello":
        assert "refusing to start" in info.value.log
    if mode not in ("error", "busy"):
        time.sleep(0.2)
        assert not proc.alive()
    else:
        assert proc.alive(), "a refused request keeps the backend"


def test_garbage_instead_of_a_handshake_is_named(tmp_path):
    config = BackendConfig(python=sys.executable, backend_root=str(REPO),
                           argv=(sys.executable, str(FAKE), "garbage_hello"), hello_timeout=3.0)
    proc = BackendProcess(config)
    try:
        job = Job(proc, request())
        with pytest.raises(JobFailed) as info:
            job.wait(60)
        assert info.value.code == "backend_unavailable"
        assert "garbled data instead of its handshake" in info.value.message and "standard output" in info.value.hint
        assert not proc.alive()
    finally:
        proc.kill()


def test_stray_output_before_the_handshake_is_skipped(backends):
    proc = backends("stray_hello")
    assert Job(proc, request()).wait(30).meshes
    assert proc.garbled  # remembered, in case no handshake had followed


def test_a_ping_meets_garbage_after_the_handshake(backends):
    proc = backends("hello_garbage")
    proc.wait_hello(20)
    deadline = time.monotonic() + 20
    while proc.events.empty() and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(BackendUnavailable, match="Garbled"):
        proc.ping()
    assert not proc.alive()


@pytest.mark.parametrize(("text", "words"), [
    ("[1]", "not a list"), ("7", "not a number"), ("null", "not null"), ('"x"', "not a string"),
    ("NaN", "NaN"), ('{"depth": Infinity}', "Infinity"), ('{"depth": -Infinity}', "Infinity"),
    ('{"depth": 1e400}', "'depth' is inf"), ('{"resolution": 1' + "0" * 5000 + "}", "not valid JSON"),
    ("{bad", "not valid JSON"), ("[" * 100_000, "not valid JSON"),
])
def test_params_json_must_be_an_object_of_finite_values(text, words):
    with pytest.raises(ValueError) as info:
        parse_params_json(text)
    assert words in str(info.value) and "Traceback" not in str(info.value) and len(str(info.value)) < 300


def test_params_json_objects_and_blanks():
    assert parse_params_json("  ") is None
    assert parse_params_json('{"resolution": 128, "normals": "inflate"}') == {"resolution": 128, "normals": "inflate"}
    assert checked_params({"depth": 0.5}) == {"depth": 0.5}
    with pytest.raises(ValueError, match="'depth'"):
        checked_params({"depth": float("nan")})


def test_engine_params_leave_unconvertible_values_to_the_backend():
    engine = {"params": [{"name": "resolution", "type": "int"}, {"name": "depth", "type": "float"},
                         {"name": "fill", "type": "bool"}]}
    out = engine_params(engine, {"resolution": float("nan"), "depth": "deep", "fill": 1})
    assert out["resolution"] != out["resolution"] and out["depth"] == "deep" and out["fill"] is True
    assert engine_params(engine, {"resolution": 3.5, "depth": 10**400})["resolution"] == 3.5


def test_a_seed_no_frame_can_carry_is_refused_before_sending(backends):
    proc = backends("ok")
    job = Job(proc, request(seed="seven"))
    with pytest.raises(JobFailed) as info:
        job.wait(30)
    assert info.value.code == "bad_input" and "seed" in info.value.hint
    assert proc.alive()


def test_hang_is_detected_and_the_backend_killed(backends, monkeypatch):
    """The fake answers, then freezes: the hang timer fires, counted from the last frame heard."""
    watch = watch_hangs(monkeypatch, Job)
    proc = backends("hang", hang_timeout=1.5)
    job = Job(proc, request(), hang_timeout=1.5)
    with pytest.raises(JobFailed) as info:
        job.wait(SAFETY_SECONDS)  # a wait this long ends as 'cancelled' instead: then the timer never fired
    assert info.value.code == "hung", info.value.message
    assert "stopped responding" in info.value.message
    assert watch.silence is not None and watch.silence >= 1.5, "it waited the whole timeout after the last frame"
    assert not proc.alive()


def sampling_job(proc: BackendProcess) -> Job:
    """A job against the slow fake, driven until it is sampling (cancellable)."""
    job = Job(proc, request())
    while job.state != "running" or job.stage != "sampling":
        job.pump()
        time.sleep(0.01)
    return job


def test_cancel(backends):
    proc = backends("slow")
    job = sampling_job(proc)
    job.cancel()
    with pytest.raises(JobFailed) as info:
        job.wait(SAFETY_SECONDS)
    assert info.value.code == "cancelled"
    assert info.value.message == "Generation cancelled.", "the backend's own reply, not the grace kill"
    assert proc.alive(), "a cancel keeps the backend for the next request"


def test_progress_after_a_cancel_keeps_saying_cancelling(backends):
    proc = backends("slow")
    job = sampling_job(proc)
    job.cancel()
    job._on_message(P.Progress(stage="sampling", step=3, total=12, message="step 3"))  # already on the wire
    assert (job.state, job.stage, job.message) == ("cancelling", "cancelling", "Cancelling...")
    with pytest.raises(JobFailed):
        job.wait(SAFETY_SECONDS)


def test_stopping_the_backend_during_a_run_reads_as_a_cancel(backends):
    from blender_addon.client import Event

    proc = backends("slow")
    job = sampling_job(proc)
    job.cancel()
    job.feed(Event("exit", error="exited with code -15"))  # what Stop Backend's kill produces
    assert job.failure is not None and job.failure.code == "cancelled"


def test_oversized_request_is_refused_and_the_backend_kept(backends):
    proc = backends("ok")
    job = Job(proc, GenerateSettings(image_name="big", image_bytes=bytes(65 << 20)))
    with pytest.raises(JobFailed) as info:
        job.wait(30)
    assert info.value.code == "bad_input" and "smaller image" in info.value.hint
    assert proc.alive()
    assert Job(proc, request()).wait(30).meshes  # nothing half-sent: the next request works


def test_unexpected_error_while_following_a_job_ends_it(backends):
    proc = backends("slow")
    job = Job(proc, request())
    job.pump()
    job.abort(RuntimeError("boom"))
    assert job.finished and job.failure is not None and job.failure.code == "internal"
    assert "boom" in job.failure.message
    time.sleep(0.2)
    assert not proc.alive()


def test_manager_restarts_a_dead_backend():
    manager = BackendManager()
    config = fake_config("crash")
    try:
        first = manager.get(config)
        with pytest.raises(JobFailed):
            Job(first, request()).wait(30)
        second = manager.get(config)
        assert second is not first and second.alive() and second.hello is not None
        assert second.ping().busy
    finally:
        manager.stop()
    assert manager.running() is None


def test_unstartable_interpreter():
    config = BackendConfig(python="/nonexistent/python", backend_root=str(REPO))
    with pytest.raises(BackendUnavailable, match="Could not start"):
        BackendManager().get(config)


def _log_until(proc: BackendProcess, needle: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while needle not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc.log_tail()


@pytest.mark.parametrize("prefix", [(), ("ssh", "gpu-box")])
def test_only_a_local_backend_is_asked_for_the_edges(prefix):
    """Over a remote link 24 more bytes a face cost more than Blender computing the edges itself."""
    config = dataclasses.replace(fake_config("ok"), prefix=prefix)
    stub = type("Stub", (), {"config": config, "hello": None})()
    message = Job(stub, request(), 15.0)._request_message()  # type: ignore[arg-type]
    assert message.want_edges is (not prefix)
