"""Device logic that needs no GPU: mixing devices in one op is a clear error naming both
devices, ``"cuda"`` means the current GPU, and without a usable GPU every CUDA entry point
says why (no cupy, no driver, no device). The GPU side is in ``tests/gpu``."""

import importlib
import sys
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F

device_module = importlib.import_module("distgrad.backend.device")


class OnCuda1(dg.Tensor):
    """A CPU tensor that claims to live on cuda:1, to reach the device checks without a GPU
    (they run before any array work)."""

    __slots__ = ()

    @property
    def device(self):
        return dg.device("cuda:1")


def fake(*shape):
    return OnCuda1(np.ones(shape, np.float32))


@pytest.mark.parametrize(
    "name, call",
    [
        ("add", lambda: dg.ones(2, 2) + fake(2, 2)),
        ("mul", lambda: dg.mul(dg.ones(2, 2), fake(2, 2))),
        ("matmul", lambda: dg.ones(2, 2) @ fake(2, 2)),
        ("cat", lambda: dg.cat([dg.ones(2, 2), fake(2, 2)])),
        ("conv2d", lambda: F.conv2d(dg.ones(1, 1, 2, 2), fake(1, 1, 2, 2))),
        ("mse_loss", lambda: F.mse_loss(dg.ones(2, 2), fake(2, 2))),
        ("embedding", lambda: F.embedding(dg.zeros(2, dtype=dg.int64), fake(2, 2))),
    ],
)
def test_mixing_devices_names_both(name, call):
    with pytest.raises(
        RuntimeError,
        match=r"expected all tensors to be on the same device, "
        r"but found at least two devices, cpu, cuda:1",
    ):
        call()


def test_cuda_without_index_is_the_current_gpu_or_0():
    assert dg.device("cuda") == dg.device("cuda:0") or dg.cuda.is_available()
    assert dg.device("cuda:3").index == 3 and str(dg.device("cuda:3")) == "cuda:3"
    assert dg.device(2) == dg.device("cuda:2")
    assert dg.device("cpu").index is None


@pytest.fixture
def fresh_cupy_probe(monkeypatch):
    """Forget the cached probe of cupy, and give a fake ``cupy`` module to probe."""
    monkeypatch.setattr(device_module, "_cupy", None)
    monkeypatch.setattr(device_module, "_cupy_error", None)

    def install(count=None, error=None):
        if count is None and error is None:
            monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
            return

        def get_count():
            if error is not None:
                raise error
            return count

        module = ModuleType("cupy")
        module.cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=get_count))
        monkeypatch.setitem(sys.modules, "cupy", module)

    return install


@pytest.mark.parametrize(
    "setup, reason",
    [
        ({}, r"cupy is not installed \(pip install 'distgrad\[cuda12\]'\)"),
        (
            {
                "error": RuntimeError(
                    "cudaErrorInsufficientDriver: CUDA driver version is insufficient"
                )
            },
            "cupy could not reach a CUDA device: cudaErrorInsufficientDriver",
        ),
        ({"count": 0}, "no CUDA device is visible"),
    ],
)
def test_cuda_unavailable_says_why(fresh_cupy_probe, setup, reason):
    fresh_cupy_probe(**setup)
    assert not dg.cuda.is_available() and dg.cuda.device_count() == 0
    for call in (
        lambda: dg.zeros(2, device="cuda"),
        lambda: dg.ones(2).cuda(),
        lambda: dg.ones(2).to("cuda:0"),
        lambda: dg.nn.Linear(2, 2).to("cuda"),
        dg.cuda.current_device,
        dg.cuda.synchronize,
        lambda: dg.cuda.set_device(0),
        dg.cuda.memory_allocated,
        dg.cuda.mem_get_info,
    ):
        with pytest.raises(RuntimeError, match=reason):
            call()
    assert dg.device("cuda") == dg.device("cuda:0")
    assert (dg.ones(2) + 1).tolist() == [2.0, 2.0]  # the CPU is unaffected


def test_a_visible_gpu_is_available(fresh_cupy_probe):
    fresh_cupy_probe(count=2)
    assert dg.cuda.is_available() and dg.cuda.device_count() == 2
