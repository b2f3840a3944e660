"""Device support on a real GPU: moving tensors and modules, factories, the ``distgrad.cuda``
functions, ops running under their tensor's GPU, mixing devices, double backward on cupy."""

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F

from .gpu_helpers import gpu_count, requires_2_gpus

pytestmark = pytest.mark.gpu


def test_moving_tensors_and_gradients_through_moves():
    x = dg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = x.cuda()
    assert y.device == dg.device("cuda:0") and y.is_cuda and y.to("cuda") is y
    assert x.to("cuda:0", dg.float64).dtype == dg.float64
    z = (y * y).sum().cpu()
    assert z.device == dg.device("cpu")
    z.backward()
    assert x.grad.device.type == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -4.0, 6.0])
    assert y.cpu().tolist() == x.tolist() and y.cpu() is not x


def test_factories_on_the_gpu():
    dg.manual_seed(3)
    on_cpu = dg.randn(5)
    dg.manual_seed(3)
    on_gpu = dg.randn(5, device="cuda")
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), on_cpu.numpy())  # one seeded stream
    for t in (
        dg.zeros(2, 3, device="cuda"),
        dg.ones(2, device="cuda:0"),
        dg.full((2,), 7.0, device="cuda"),
        dg.arange(4, device="cuda"),
        dg.eye(3, device="cuda"),
        dg.tensor([1, 2], device="cuda"),
        dg.zeros_like(on_gpu),
        dg.rand(3, device=dg.device("cuda")),
    ):
        assert t.device.type == "cuda", t
    assert dg.tensor(on_gpu.array, device="cpu").device.type == "cpu"  # a cupy array to cpu


def test_module_to_and_optimizer_step_on_the_gpu():
    model = dg.nn.Sequential(
        dg.nn.Linear(4, 8), dg.nn.BatchNorm1d(8), dg.nn.ReLU(), dg.nn.Linear(8, 2)
    ).to("cuda")
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(b.device.type == "cuda" for b in model.buffers())
    opt = dg.optim.Adam(model.parameters(), lr=1e-2)
    x, y = dg.randn(16, 4, device="cuda"), dg.randint(0, 2, (16,), device="cuda")
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert all(p.grad.device.type == "cuda" for p in model.parameters())


def test_cuda_functions():
    assert dg.cuda.is_available() and dg.cuda.device_count() == gpu_count() >= 1
    dg.cuda.set_device(0)
    assert dg.cuda.current_device() == 0 and dg.device("cuda") == dg.device("cuda:0")
    before = dg.cuda.memory_allocated()
    big = dg.zeros(1 << 20, device="cuda")
    assert dg.cuda.memory_allocated() >= before + big.array.nbytes
    assert dg.cuda.memory_reserved(0) >= dg.cuda.memory_allocated("cuda:0")
    assert dg.cuda.max_memory_allocated() >= dg.cuda.memory_allocated()
    free, total = dg.cuda.mem_get_info()
    assert 0 < free <= total
    assert isinstance(dg.cuda.get_device_name(), str)
    dg.cuda.synchronize()
    dg.cuda.synchronize("cuda:0")
    dg.cuda.manual_seed_all(1)


def test_mixing_cpu_and_gpu_names_both_devices():
    with pytest.raises(RuntimeError, match="at least two devices, cpu, cuda:0"):
        dg.ones(2) + dg.ones(2, device="cuda")
    with pytest.raises(RuntimeError, match="at least two devices, cuda:0, cpu"):
        dg.ones(2, 2, device="cuda") @ dg.ones(2, 2)
    with pytest.raises(RuntimeError, match="two devices"):
        F.cross_entropy(dg.randn(3, 4, device="cuda"), dg.tensor([0, 1, 2]))


def test_double_backward_on_the_gpu():
    x = dg.tensor([0.5, -1.0, 2.0], device="cuda", dtype=dg.float64, requires_grad=True)
    y = (dg.tanh(x) * x**3).sum()
    (g,) = dg.autograd.grad(y, x, create_graph=True)
    (gg,) = dg.autograd.grad(g.sum(), x)
    t = np.tanh(x.detach().cpu().numpy())
    xs = x.detach().cpu().numpy()
    d1 = (1 - t**2) * xs**3 + 3 * t * xs**2
    d2 = -2 * t * (1 - t**2) * xs**3 + 6 * (1 - t**2) * xs**2 + 6 * t * xs
    np.testing.assert_allclose(g.detach().cpu().numpy(), d1, rtol=1e-10)
    np.testing.assert_allclose(gg.cpu().numpy(), d2, rtol=1e-10)


@requires_2_gpus
def test_ops_run_on_their_tensors_gpu():
    dg.cuda.set_device(0)
    a = dg.randn(64, 64, device="cuda:1", requires_grad=True)
    b = (a @ a).relu().sum()  # launched while cuda:0 is current
    b.backward()
    assert b.device == dg.device("cuda:1") and a.grad.device == dg.device("cuda:1")
    assert dg.cuda.current_device() == 0
    moved = a.detach().to("cuda:0")  # GPU to GPU: a real copy on the other GPU
    assert moved.device == dg.device("cuda:0")
    np.testing.assert_array_equal(moved.cpu().numpy(), a.detach().cpu().numpy())
    with pytest.raises(RuntimeError, match="cuda:1, cuda:0"):
        a + moved
