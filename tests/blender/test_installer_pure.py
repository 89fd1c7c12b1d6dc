"""Install Backend's bpy-free layer: the torch build for a driver, the plan, pip's output, the marker, and
the runner driven with small stand-in steps (real subprocesses, no pip, no network). No bpy here."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import sys
from pathlib import Path

import pytest

from blender_addon import install_env, install_summary
from blender_addon.install_plan import (
    MARKER,
    TORCH_INDEX,
    TORCH_VERSION,
    InstallPlan,
    InstallSettings,
    Machine,
    PlanProblem,
    Step,
    TorchChoice,
    choose_torch,
    env_python,
    find_pins,
    parse_nvidia_smi,
    pinned,
    pins_hash,
    plan_install,
    platform_problem,
    step_env,
)
from blender_addon.installer import Installer
from blender_addon.pip_output import PipProgress, classify, short_name

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "requirements" / "backend-pins.txt"
LINUX = Machine("Linux", "x86_64")
BPY_FREE = ("install_plan.py", "pip_output.py", "install_env.py", "installer.py", "install_summary.py")


def nvidia(driver: str, cap: str | None = None, system: str = "Linux") -> Machine:
    line = f"{driver}, {cap}" if cap else driver
    parsed, compute = parse_nvidia_smi(line + "\n")
    return Machine(system, "x86_64", driver=parsed, compute_cap=compute)


# ---------------------------------------------------------------------------------------------- torch build


def test_nvidia_smi_answers_are_read():
    assert parse_nvidia_smi("560.35.03, 8.6\n") == ((560, 35, 3), (8, 6))
    assert parse_nvidia_smi("580.95.05, 12.0\n580.95.05, 8.9\n") == ((580, 95, 5), (12, 0)), "first GPU"
    assert parse_nvidia_smi("535.104.05\n") == ((535, 104, 5), None), "drivers too old for compute_cap"
    banner = "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |"
    assert parse_nvidia_smi(banner) == ((535, 104, 5), None)
    assert parse_nvidia_smi("") == (None, None)
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver.") == (None, None)


@pytest.mark.parametrize(("driver", "cap", "system", "variant"), [
    ("580.95.05", "9.0", "Linux", "cu130"),
    ("575.57.08", "8.9", "Linux", "cu128"),
    ("570.26", None, "Linux", "cu128"),
    ("565.57.01", "8.6", "Linux", "cu126"),
    ("560.28.03", None, "Linux", "cu126"),
    ("572.16", "8.6", "Windows", "cu128"),
    ("560.94", None, "Windows", "cu126"),
    ("580.95.05", "6.1", "Linux", "cu126"),  # Pascal: the CUDA 12.8+ builds carry no kernels for it
    ("570.124.06", "12.0", "Linux", "cu128"),  # Blackwell needs 12.8 or newer
])
def test_the_newest_cuda_build_the_driver_runs(driver, cap, system, variant):
    choice = choose_torch(nvidia(driver, cap, system))
    assert choice.variant == variant and driver.split(".")[0] in choice.reason


def test_old_drivers_and_no_driver_get_the_cpu_build():
    old = choose_torch(nvidia("535.104.05"))
    assert old.variant == "cpu" and "older" in old.reason and "535.104.5" in old.reason
    assert choose_torch(nvidia("565.57.01", "12.0")).variant == "cpu", "Blackwell on a pre-12.8 driver"
    assert choose_torch(LINUX).variant == "cpu"
    assert choose_torch(Machine("Windows", "amd64")).variant == "cpu"


def test_apple_silicon_gets_the_default_build_and_the_preference_wins():
    assert choose_torch(Machine("Darwin", "arm64")).variant == "default"
    assert choose_torch(nvidia("580.95.05"), "cu118").variant == "cu118"
    assert choose_torch(nvidia("580.95.05"), "cpu").variant == "cpu"
    with pytest.raises(PlanProblem, match="Unknown torch build"):
        choose_torch(LINUX, "cu999")


def test_unsupported_platforms_are_named():
    assert "Intel Macs" in platform_problem(Machine("Darwin", "x86_64"))
    assert "32-bit" in platform_problem(Machine("Windows", "x86", bits=32))
    assert "Python 3.9" in platform_problem(Machine("Linux", "x86_64", python=(3, 9)))
    assert platform_problem(Machine("Linux", "aarch64")) == ""


# ---------------------------------------------------------------------------------------------- plan


def settings(tmp_path: Path, **kw) -> InstallSettings:
    return InstallSettings(user_dir=str(tmp_path / "user"), pins_path=str(PINS), addon_version="0.1.0",
                           base_python="/blender/python", **kw)


def pip_steps(plan: InstallPlan) -> dict[str, tuple[str, ...]]:
    return {s.name: s.argv for s in plan.steps if s.pip}


def test_a_wheel_folder_is_the_only_source_and_needs_no_network(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    plan = plan_install(settings(tmp_path, wheel_dir=str(wheels), online=False), LINUX, environ={})
    assert [s.name for s in plan.steps] == ["venv", "pip", "torch", "requirements", "verify"]
    for argv in pip_steps(plan).values():
        assert argv[-3:] == ("--no-index", "--find-links", str(wheels))
    assert plan.steps[0].argv == ("/blender/python", "-m", "venv", plan.partial_dir)
    assert plan.partial_dir == plan.env_dir + ".partial" and plan.env_dir == str(tmp_path / "user" / "backend-env")
    assert all(a.startswith(plan.partial_dir) for a in (s.argv[0] for s in plan.steps[1:]))
    assert f"torch=={TORCH_VERSION}" in pip_steps(plan)["torch"]
    assert ("-r", str(PINS)) == pip_steps(plan)["requirements"][-5:-3]
    assert plan.env["PIP_CONFIG_FILE"] == os.devnull
    assert plan.marker["pins_sha256"] == pins_hash(PINS.read_text()) and plan.marker["addon_version"] == "0.1.0"


def test_the_default_source_takes_torch_from_the_pytorch_index_of_the_build(tmp_path):
    plan = plan_install(settings(tmp_path, online=True), nvidia("575.57.08"), environ={})
    steps = pip_steps(plan)
    assert steps["torch"][-2:] == ("--index-url", TORCH_INDEX + "cu128")
    assert "--index-url" not in steps["requirements"] and "--no-index" not in steps["requirements"]
    assert "PIP_CONFIG_FILE" not in plan.env, "the user's own pip configuration (proxies) stays"
    mac = plan_install(settings(tmp_path, online=True), Machine("Darwin", "arm64"), environ={})
    assert "--index-url" not in pip_steps(mac)["torch"]


def test_a_private_index_serves_everything_and_env_variables_win(tmp_path):
    environ = {"HI3DGEN_INDEX_URL": "http://pypi.studio.lan:8080/simple", "PIP_INDEX_URL": "https://x/simple",
               "PIP_FIND_LINKS": "/opt/wheels", "PYTHONHOME": "/blender/python", "HTTPS_PROXY": "http://proxy:3128"}
    plan = plan_install(settings(tmp_path, index_url="https://ignored/simple", online=True), LINUX, environ)
    for argv in pip_steps(plan).values():
        assert argv[-4:] == ("--index-url", "http://pypi.studio.lan:8080/simple", "--trusted-host",
                             "pypi.studio.lan")
    assert plan.source == "index" and plan.source_text == environ["HI3DGEN_INDEX_URL"]
    assert {"PIP_INDEX_URL", "PIP_FIND_LINKS", "PYTHONHOME"}.isdisjoint(plan.env)
    assert plan.env["HTTPS_PROXY"] == "http://proxy:3128"
    wheels = tmp_path / "w"
    wheels.mkdir()
    over = plan_install(settings(tmp_path, index_url="https://x/simple"), LINUX, {"HI3DGEN_WHEELS": str(wheels)})
    assert over.source == "wheels"


def test_refusals_say_what_to_do(tmp_path):
    with pytest.raises(PlanProblem, match="online access is off") as offline:
        plan_install(settings(tmp_path, online=False), LINUX, environ={})
    assert "Wheel Folder" in offline.value.hint
    with pytest.raises(PlanProblem, match="online access is off"):
        plan_install(settings(tmp_path, index_url="https://pypi.studio.lan/simple"), LINUX, environ={})
    with pytest.raises(PlanProblem, match="does not exist"):
        plan_install(settings(tmp_path, wheel_dir=str(tmp_path / "none")), LINUX, environ={})
    with pytest.raises(PlanProblem, match="not an http"):
        plan_install(settings(tmp_path, index_url="pypi.studio.lan", online=True), LINUX, environ={})
    with pytest.raises(PlanProblem) as mac:
        plan_install(settings(tmp_path, online=True), Machine("Darwin", "x86_64"), environ={})
    assert mac.value.code == "unsupported_platform" and "Remote Command" in mac.value.hint
    missing = dataclasses.replace(settings(tmp_path, online=True), pins_path=str(tmp_path / "no-pins.txt"))
    with pytest.raises(PlanProblem, match="pinned requirements"):
        plan_install(missing, LINUX, environ={})


def test_the_confirmation_names_the_python_torch_source_sizes_and_licences(tmp_path):
    plan = plan_install(settings(tmp_path, online=True), nvidia("575.57.08"), environ={})
    lines = install_summary.summary_lines(plan, free=50 * install_summary.GB, system="Linux", environ={})
    text = "\n".join(lines)
    assert f"Into: {plan.env_dir}" in lines and "Made by: /blender/python" in lines
    assert "cu128: the newest CUDA build NVIDIA driver 575.57.8 runs" in text
    assert "Download: about 3.4 GB; on disk: about 7.2 GB, 50.0 GB free" in text
    assert "BSD-3-Clause" in text and "NVIDIA" in text and "the default package index" in text
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    offline = plan_install(settings(tmp_path, wheel_dir=str(wheels)), LINUX, environ={})
    assert "Download: nothing (all from the wheel folder); on disk: about 2.2 GB" in "\n".join(
        install_summary.summary_lines(offline, None, system="Linux", environ={}))
    named = dataclasses.replace(plan, base_python="/opt/py311/bin/python3")
    assert "set by HI3DGEN_BASE_PYTHON" in install_summary.base_python_reason(
        named, {"HI3DGEN_BASE_PYTHON": "/opt/py311/bin/python3"})
    assert "Blender's own Python" in install_summary.base_python_reason(
        dataclasses.replace(plan, base_python=sys.executable), {})


def test_a_disk_without_room_is_refused_before_anything_runs(tmp_path):
    Usage = dataclasses.make_dataclass("Usage", ["total", "used", "free"])
    plan = plan_install(settings(tmp_path, online=True), LINUX, environ={})
    with pytest.raises(PlanProblem, match="Not enough free disk space") as info:
        install_summary.check_disk(plan, lambda path: Usage(10**12, 10**12, 2 * 10**9), system="Linux")
    assert info.value.code == "disk_full" and "Install Backend again" in info.value.hint
    install_summary.check_disk(plan, lambda path: Usage(10**12, 0, 10**12), system="Linux")  # room: no error
    assert install_summary.free_bytes(str(tmp_path / "not" / "yet")) is not None  # its nearest parent


def test_more_pip_options_come_from_the_environment(tmp_path):
    wheels = tmp_path / "w"
    wheels.mkdir()
    environ = {"HI3DGEN_PIP_ARGS": "--proxy 'http://proxy:3128' --no-compile"}
    plan = plan_install(settings(tmp_path, wheel_dir=str(wheels)), LINUX, environ)
    for argv in pip_steps(plan).values():
        assert argv[argv.index("--retries") + 2:][:3] == ("--proxy", "http://proxy:3128", "--no-compile")
    with pytest.raises(PlanProblem, match="HI3DGEN_PIP_ARGS"):
        plan_install(settings(tmp_path, wheel_dir=str(wheels)), LINUX, {"HI3DGEN_PIP_ARGS": "'unclosed"})


def test_step_env_keeps_the_users_pip_setup_only_for_the_default_source():
    env = {"PIP_INDEX_URL": "a", "PIP_CERT": "/c.pem", "PYTHONPATH": "/blender"}
    assert step_env("default", env)["PIP_INDEX_URL"] == "a" and "PYTHONPATH" not in step_env("default", env)
    assert "PIP_INDEX_URL" not in step_env("wheels", env) and step_env("wheels", env)["PIP_CERT"] == "/c.pem"


def test_the_pins_are_exact_and_cover_the_backend_requirements():
    text = PINS.read_text()
    specs = [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+]+", s) for s in specs), "exact versions only"
    names = {re.sub(r"[-_.]+", "-", s.split("==")[0]).lower() for s in specs}
    wanted = [line.split("#")[0].strip() for line in (REPO / "requirements" / "backend.txt").read_text().splitlines()]
    for req in filter(None, wanted):
        assert re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[;]", req)[0]).lower() in names, req
    assert "torch" not in names, "torch is its own step, from the index that fits the machine"
    assert pinned(text, "pip").startswith("pip==")
    assert find_pins(str(REPO / "blender_addon")) == str(PINS)


def test_pins_hash_reads_the_pins_not_their_layout():
    assert pins_hash("a==1\n# note\nb==2\n") == pins_hash("b==2\n\na==1  # why\n")
    assert pins_hash("a==1\nb==2\n") != pins_hash("a==1\nb==3\n")


# ---------------------------------------------------------------------------------------------- pip output


def test_progress_follows_pips_lines():
    p = PipProgress()
    p.feed("Looking in links: /wheels")
    assert p.text() == ""
    p.feed("Collecting torch==2.13.0")
    assert p.text() == "collecting torch==2.13.0"
    p.feed("  Downloading https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-cp311-linux.whl (190.3 MB)")
    assert (p.package, p.bytes_total) == ("torch-2.13.0%2Bcpu", 190_300_000)
    p.feed("Progress 0 of 190300000")
    p.feed("Progress 95150000 of 190300000")
    assert p.text() == "downloading torch-2.13.0%2Bcpu 95.2 MB / 190.3 MB"
    p.feed("Progress 190300000 of 190300000")
    p.feed("Progress 190300000 of 190300000")
    assert p.downloaded == 190_300_000, "a finished download counts once"
    p.feed("Processing ./wheels/numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl (from -r pins.txt (line 33))")
    assert p.text() == "processing numpy-2.4.6"
    p.feed("Installing collected packages: mpmath, sympy, torch")
    assert p.text() == "installing mpmath, sympy, torch"
    p.feed("  Downloading six-1.17.0-py2.py3-none-any.whl (11 kB)")
    assert p.bytes_total == 11_000


def test_short_names():
    assert short_name("./w/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl") == "torch-2.13.0+cpu"
    assert short_name("https://x/numpy-2.4.6.tar.gz") == "numpy-2.4.6"
    assert short_name("scipy==1.17.1") == "scipy==1.17.1"


REFUSED = [
    "Looking in indexes: http://127.0.0.1:9/simple",
    "WARNING: Retrying (Retry(total=1, connect=None, read=None, redirect=None, status=None)) after connection "
    "broken by 'NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new "
    "connection: [Errno 111] Connection refused\")': /simple/six/",
    "ERROR: Could not find a version that satisfies the requirement six (from versions: none)",
    "ERROR: No matching distribution found for six",
]
DNS = [
    "WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection "
    "broken by 'NameResolutionError(\"HTTPSConnection(host='pypi.org', port=443): Failed to resolve 'pypi.org' "
    "([Errno -3] Temporary failure in name resolution)\")': /simple/torch/",
    "ERROR: No matching distribution found for torch==2.13.0",
]


@pytest.mark.parametrize(("lines", "code", "words"), [
    (REFUSED, "index_refused", ("refused", "Package Index URL")),
    (DNS, "network", ("No network", "Wheel Folder")),
    (["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"], "disk_full",
     ("disk is full", "Free some space")),
    (["WARNING: Retrying ... ProxyError('Cannot connect to proxy.', OSError('Tunnel connection failed: 407 "
      "Proxy Authentication Required'))", "ERROR: No matching distribution found for pip==26.3"], "proxy",
     ("proxy", "HTTPS_PROXY")),
    (["Could not fetch URL https://pypi.org/simple/pip/: There was a problem confirming the ssl certificate: "
      "HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded (Caused by "
      "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')))"],
     "ssl", ("certificate", "PIP_CERT")),
    (["ERROR: HTTP error 403 while getting https://pypi.studio.lan/simple/torch/"], "index_refused", ("refused",)),
    (["ERROR: Could not find a version that satisfies the requirement torch==2.13.0 (from versions: none)",
      "ERROR: No matching distribution found for torch==2.13.0"], "unsupported_platform", ("No torch build",)),
    (["ERROR: something unheard of"], "pip_failed", ("installing torch", "install log")),
])
def test_failures_are_told_plainly(lines, code, words):
    error = classify(lines, "default", "", "torch")
    assert error.code == code
    for word in words:
        assert word in error.user_text()
    assert error.detail


def test_a_wheel_folder_missing_a_package_says_what_to_add():
    error = classify(["ERROR: No matching distribution found for scipy==1.17.1"], "wheels", "/w", "requirements")
    assert error.code == "not_found" and "scipy==1.17.1" in error.message and "/w" in error.hint
    index = classify(["ERROR: No matching distribution found for scipy==1.17.1"], "index", "https://i/simple",
                     "requirements")
    assert "https://i/simple" in index.message and "mirror" in index.hint


# ---------------------------------------------------------------------------------------------- marker


def made_env(folder: Path, marker: dict[str, str] | None) -> Path:
    python = Path(env_python(str(folder)))
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    if marker is not None:
        install_env.write_marker(str(folder), marker)
    return folder


def test_env_status_tells_missing_broken_outdated_and_ready(tmp_path):
    env = tmp_path / "backend-env"
    assert install_env.env_status(str(env), "0.1.0", "h").state == "missing"
    made_env(env, None)
    assert install_env.env_status(str(env), "0.1.0", "h").state == "broken"
    install_env.write_marker(str(env), {"addon_version": "0.0.9", "pins_sha256": "h", "torch": "2.13.0 (cpu)"})
    old = install_env.env_status(str(env), "0.1.0", "h")
    assert old.state == "outdated" and old.needs_repair and "0.0.9" in old.message
    install_env.write_marker(str(env), {"addon_version": "0.1.0", "pins_sha256": "other"})
    assert install_env.env_status(str(env), "0.1.0", "h").state == "outdated"
    install_env.write_marker(str(env), {"addon_version": "0.1.0", "pins_sha256": "h", "torch": "2.13.0 (cpu)"})
    ready = install_env.env_status(str(env), "0.1.0", "h")
    assert ready.state == "ready" and not ready.needs_repair and "cpu" in ready.message
    (env / MARKER).write_text("{not json")
    assert install_env.env_status(str(env), "0.1.0", "h").state == "broken"
    (env / MARKER).write_text("[1, 2]")
    assert install_env.read_marker(str(env)) is None


def test_discard_renames_at_once_and_deletes_in_the_background(tmp_path):
    env = made_env(tmp_path / "backend-env", {"addon_version": "0.1.0"})
    thread = install_env.discard_tree(str(env), str(env))
    assert thread is not None and not env.exists()
    thread.join(60)
    assert list(tmp_path.iterdir()) == []
    assert install_env.discard_tree(str(env), str(env)) is None
    stale = tmp_path / "backend-env.trash-1-2" / "lib"
    stale.mkdir(parents=True)
    install_env.clear_partial(str(env))
    assert list(tmp_path.iterdir()) == [], "a deletion cut short by Blender's exit is finished later"


def test_finish_swaps_in_the_new_environment_and_fixes_its_scripts(tmp_path):
    env = made_env(tmp_path / "backend-env", {"addon_version": "old"})
    partial = made_env(tmp_path / "backend-env.partial", {"addon_version": "new"})
    script = Path(env_python(str(partial))).parent / "pip"
    script.write_text(f"#!{env_python(str(partial))}\nimport pip\n")
    deleting = install_env.finish(str(partial), str(env))
    assert install_env.read_marker(str(env)) == {"addon_version": "new"}
    assert not partial.exists() and not (tmp_path / "backend-env.old").exists()
    assert deleting is not None
    deleting.join(60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backend-env"]
    assert (Path(env_python(str(env))).parent / "pip").read_text().startswith(f"#!{env_python(str(env))}\n")
    with pytest.raises(OSError, match="not a folder"):
        install_env.remove_tree(env_python(str(env)))  # a file is refused, never deleted


# ---------------------------------------------------------------------------------------------- runner


def fake_plan(tmp_path: Path, *scripts: str) -> InstallPlan:
    """A plan whose steps are small Python scripts; the first makes the partial environment."""
    env_dir = str(tmp_path / "backend-env")
    partial = env_dir + ".partial"
    make = (f"import os; p = {env_python(partial)!r}; os.makedirs(os.path.dirname(p)); open(p, 'w').close(); "
            "print('made')")
    steps = [Step("venv", "Creating", (sys.executable, "-c", make), 0.2)]
    steps += [Step(f"s{n}", f"Step {n}", (sys.executable, "-c", code), 0.4, pip=True) for n, code in
              enumerate(scripts)]
    return InstallPlan(env_dir=env_dir, partial_dir=partial, steps=tuple(steps), env=dict(os.environ),
                       torch=TorchChoice("cpu", "test"), source="wheels", source_text=str(tmp_path),
                       marker={"addon_version": "0.1.0", "pins_sha256": "h"}, base_python=sys.executable)


def test_a_finished_run_puts_the_environment_in_place_with_its_marker_and_log(tmp_path):
    plan = fake_plan(tmp_path, "print('Collecting torch==2.13.0'); print('Progress 5 of 10')")
    state = Installer(plan, str(tmp_path / "install.log")).start().wait(60)
    assert state.finished and state.ok and state.error is None and state.fraction == 1.0
    assert state.python == env_python(plan.env_dir) and os.path.isfile(state.python)
    assert install_env.read_marker(plan.env_dir) == plan.marker
    assert not os.path.exists(plan.partial_dir)
    log = (tmp_path / "install.log").read_text()
    assert "Collecting torch==2.13.0" in log and "made" in log and log.rstrip().endswith("== done")


def test_a_failed_step_leaves_nothing_and_says_why(tmp_path):
    env = made_env(tmp_path / "backend-env", {"addon_version": "0.0.9"})  # the one in use stays
    plan = fake_plan(tmp_path, "import sys; print('ERROR: No matching distribution found for scipy==1.17.1'); "
                               "sys.exit(1)")
    state = Installer(plan, str(tmp_path / "install.log")).start().wait(60)
    assert state.finished and not state.ok and not state.cancelled
    assert state.error is not None and state.error.code == "not_found" and "scipy" in state.error.message
    assert not os.path.exists(plan.partial_dir)
    assert install_env.read_marker(str(env)) == {"addon_version": "0.0.9"}, "the old environment is untouched"
    assert "failed: not_found" in (tmp_path / "install.log").read_text()


def test_cancel_stops_the_running_step_and_removes_the_partial(tmp_path):
    ready = tmp_path / "started"
    plan = fake_plan(tmp_path, f"import time; open({str(ready)!r}, 'w').close(); print('Collecting x', "
                               "flush=True); time.sleep(120)", "print('never')")
    inst = Installer(plan, str(tmp_path / "install.log")).start()
    for _ in range(600):
        if ready.exists() and inst.snapshot().stage == "s0":
            break
        inst.wait(0.1)
    assert inst.snapshot().stage == "s0"
    inst.cancel()
    state = inst.wait(60)
    assert state.finished and state.cancelled and not state.ok and state.error is None
    assert not os.path.exists(plan.partial_dir) and not os.path.exists(plan.env_dir)
    assert "never" not in (tmp_path / "install.log").read_text()


def test_a_leftover_partial_is_cleared_before_a_new_run(tmp_path):
    plan = fake_plan(tmp_path, "print('ok')")
    stale = Path(plan.partial_dir) / "junk"
    stale.mkdir(parents=True)
    assert Installer(plan, str(tmp_path / "install.log")).start().wait(60).ok
    assert not stale.exists() and os.path.isfile(env_python(plan.env_dir))


def test_the_installer_modules_do_not_import_bpy():
    for name in BPY_FREE:
        tree = ast.parse((REPO / "blender_addon" / name).read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("bpy") for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("bpy"), name
