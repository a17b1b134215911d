import numpy as np
import pytest
import torch

from xaicourse.device import current_device, device_toggle, get_device, set_seed


def test_auto_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv("XAICOURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv("XAICOURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device("auto") == torch.device("mps")


def test_env_overrides_auto(monkeypatch):
    monkeypatch.setenv("XAICOURSE_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


def test_cuda_missing_raises_with_fallback_advice(monkeypatch):
    monkeypatch.delenv("XAICOURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available.*'cpu'"):
        get_device("cuda")
    monkeypatch.setenv("XAICOURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="XAICOURSE_DEVICE"):
        get_device("auto")


def test_bad_pref():
    with pytest.raises(ValueError, match="pref must be one of"):
        get_device("tpu")
    with pytest.raises(TypeError, match="pref"):
        get_device(3)


def test_toggle_sets_device_and_reports_missing_cuda(monkeypatch):
    monkeypatch.delenv("XAICOURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen = []
    box = device_toggle("cpu", on_change=seen.append)
    assert current_device() == torch.device("cpu")
    box.toggle.value = "cuda"  # not available: message shown, choice reverted
    assert "CUDA is not available" in box.status.value
    assert box.toggle.value == "cpu"
    assert current_device() == torch.device("cpu")
    box.toggle.value = "auto"
    assert seen[-1] == torch.device("cpu") and "using" in box.status.value



def test_set_seed_determinism_and_cudnn_flag():
    set_seed(123)
    a = (torch.rand(3), np.random.rand(3))
    set_seed(123)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False
    with pytest.raises(TypeError, match="seed"):
        set_seed("1")
