"""Device and dtype choice in one place: cuda, then mps, then cpu; overridable; dtype chosen with it."""

from __future__ import annotations

import pytest
import torch

from backend.devices import available_devices, choose_placement
from backend.errors import BadInput


@pytest.fixture
def machine(monkeypatch):
    """``machine(cuda=..., mps=...)`` makes torch report those accelerators."""

    def set_up(cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_up


@pytest.mark.parametrize(("cuda", "mps", "kind", "dtype"), [
    (True, True, "cuda", torch.float16),
    (False, True, "mps", torch.bfloat16),
    (False, False, "cpu", torch.float32),
])
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, kind, dtype):
    machine(cuda, mps)
    assert available_devices()[-1] == "cpu"
    placement = choose_placement("auto")
    assert placement.device.type == kind and placement.dtype == dtype


def test_override_and_precision(machine):
    machine(True, False)
    assert choose_placement("cpu").device.type == "cpu"
    assert choose_placement("cpu").dtype == torch.float32
    assert choose_placement("cuda", precision="fp32").dtype == torch.float32
    assert choose_placement("cuda:1").device == torch.device("cuda:1")
    assert choose_placement(None).device.type == "cuda"


def test_unavailable_device_is_a_clear_error(machine):
    machine(False, False)
    with pytest.raises(BadInput, match="not available here") as info:
        choose_placement("cuda")
    assert "auto" in info.value.hint
