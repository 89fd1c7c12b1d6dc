"""Injected faults through the real subprocess: each is seen by the client as what it is."""

from __future__ import annotations

import os
import queue
import signal
import time

import numpy as np
import psutil
import pytest

from backend import protocol as P
from backend.faults import Faults

from .conftest import BackendProcess


def _start(fault: str) -> BackendProcess:
    proc = BackendProcess(env={"HI3DGEN_FAULT": fault})
    proc.expect(P.Hello)
    return proc


def _go(proc: BackendProcess, png: bytes, rid: int = 1) -> None:
    proc.send(P.Generate(image_name="b.png", image_bytes=np.frombuffer(png, np.uint8)), rid)


def _stream_end(proc: BackendProcess, timeout: float = 120.0) -> object:
    """Read until the stream ends; return what ended it (None for EOF, or the ProtocolError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = proc.frames.get(timeout=timeout)
        if item is None or isinstance(item, Exception):
            return item
    raise AssertionError("stream did not end")


def test_fault_spec_parsing():
    assert Faults.parse("") == Faults()
    assert Faults.parse("oom@relief") == Faults("oom", "relief")
    with pytest.raises(ValueError):
        Faults.parse("explode")


@pytest.mark.parametrize("fault", ["crash@relief", "exit_mid_mesh"])
def test_crash_ends_the_stream_and_the_process(fault, blob_png):
    proc = _start(fault)
    _go(proc, blob_png)
    assert _stream_end(proc) is None
    assert proc.proc.wait(timeout=60) != 0


@pytest.mark.parametrize("fault,code", [("garbage@relief", "protocol"), ("truncated_frame@relief", "truncated"),
                                        ("oversized_frame", "frame_too_large")])
def test_bad_frames_are_protocol_errors(fault, code, blob_png):
    proc = _start(fault)
    _go(proc, blob_png)
    end = _stream_end(proc)
    assert isinstance(end, P.ProtocolError) and end.code == code
    proc.proc.kill()
    proc.proc.wait()


def test_oom_is_reported_and_the_backend_keeps_serving(blob_png):
    proc = _start("oom@relief")
    try:
        _go(proc, blob_png)
        err, rid = proc.expect(P.Error)
        assert err.code == "out_of_memory" and err.hint
        proc.send(P.Ping(), 2)
        pong, _ = proc.expect(P.Pong)
        assert not pong.busy
    finally:
        proc.close()


def _wait_stopped(pid: int, timeout: float = 120.0) -> None:
    """Wait until the process is stopped (SIGSTOP), however long a loaded machine takes to get it there."""
    deadline = time.monotonic() + timeout
    while psutil.Process(pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "the hang fault never froze the backend"
        time.sleep(0.05)


def test_hang_is_visible_as_silence(blob_png):
    """Once frozen, the backend answers nothing, pings included: the client can only notice by its own timer."""
    proc = _start("hang@relief")
    try:
        _go(proc, blob_png)
        _wait_stopped(proc.proc.pid)
        proc.send(P.Ping(), 3)
        with pytest.raises(queue.Empty):  # a stopped process cannot answer, so any wait ends empty
            while True:
                msg, _ = proc.next(timeout=2.0)
                assert not isinstance(msg, P.Pong), "a frozen backend answered a ping"
    finally:
        os.kill(proc.proc.pid, signal.SIGKILL)
        proc.proc.wait()
