"""The compatibility surface a PyTorch program reaches for in its first lines (issue 19)."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

import distgrad as dg


def test_dtype_aliases():
    assert dg.float is dg.float32 and dg.double is dg.float64 and dg.half is dg.float16
    assert dg.long is dg.int64 and dg.int is dg.int32 and dg.short is dg.int16
    assert dg.bool.name == "bool" and dg.uint8.name == "uint8"
    assert dg.zeros(2, dtype=dg.long).dtype == dg.int64


def test_legacy_tensor_constructor():
    t = dg.Tensor([-4.0])
    assert t.dtype == dg.float32 and isinstance(t.array, np.ndarray) and t.tolist() == [-4.0]
    assert (t * 2).tolist() == [-8.0]  # the Python list is not kept
    assert dg.Tensor(2, 3).shape == (2, 3) and dg.Tensor().shape == (0,)
    assert dg.Tensor([[1, 2], [3, 4]]).dtype == dg.float32
    with pytest.raises(TypeError):
        dg.Tensor("abc")
    with pytest.raises(RuntimeError, match="negative"):
        dg.Tensor(-1)


def test_typed_constructors():
    assert dg.LongTensor([1, 2]).dtype == dg.int64
    assert dg.FloatTensor(2, 2).shape == (2, 2)
    assert dg.ByteTensor([1]).dtype == dg.uint8 and dg.BoolTensor([1, 0]).dtype == dg.bool
    assert isinstance(dg.LongTensor([1]), dg.LongTensor)
    assert not isinstance(dg.FloatTensor([1]), dg.LongTensor)
    assert dg.ones(2).type(dg.LongTensor).dtype == dg.int64
    assert dg.DoubleTensor(dg.ones(1)).dtype == dg.float64


def test_format():
    loss = dg.tensor(0.123456)
    assert f"{loss:.4f}" == "0.1235" and f"{dg.tensor([1.5])[0]:+.2f}" == "+1.50"
    assert f"{dg.tensor(3)}" == "3" and f"{dg.ones(2)}" == str(dg.ones(2))
    with pytest.raises(TypeError):
        format(dg.ones(2), ".2f")


def test_utils_data_is_data():
    import distgrad.utils.data as ud
    from distgrad.utils.data import DataLoader, RandomSampler

    assert ud is dg.data and DataLoader is dg.data.DataLoader
    assert RandomSampler is dg.data.RandomSampler
    assert importlib.import_module("distgrad.utils.data.dataloader") is dg.data.dataloader
    assert importlib.import_module("distgrad.utils.data.sampler") is dg.data.sampler


def test_backends_answer_honestly_and_flags_are_settable():
    import distgrad.backends.cudnn as cudnn

    assert cudnn.is_available() is False and dg.backends.mps.is_available() is False
    cudnn.benchmark = True
    cudnn.deterministic = True
    dg.backends.cuda.matmul.allow_tf32 = True
    assert dg.backends.cudnn.benchmark and dg.backends.cuda.matmul.allow_tf32
    cudnn.benchmark = cudnn.deterministic = False
    dg.backends.cuda.matmul.allow_tf32 = False
    assert dg.backends.cuda.is_built() == (dg.backend.cupy_or_none() is not None)


def test_accelerator_matches_cuda():
    assert dg.accelerator.is_available() == dg.cuda.is_available()
    current = dg.accelerator.current_accelerator()
    if dg.cuda.is_available():
        assert current.type == "cuda"
    else:
        assert current is None and dg.accelerator.device_count() == 0


def test_cuda_amp_aliases():
    from distgrad.cuda.amp import GradScaler, autocast

    assert GradScaler is dg.amp.GradScaler and issubclass(autocast, dg.amp.autocast)
    scaler = dg.cuda.amp.GradScaler(enabled=False)
    assert scaler.scale(dg.tensor(2.0)).item() == 2.0


def test_variable_and_set_default_device():
    t = dg.ones(2)
    assert dg.autograd.Variable(t, requires_grad=True) is t and t.requires_grad
    with pytest.raises(TypeError):
        dg.autograd.Variable([1.0])
    dg.set_default_device("cpu")
    assert dg.get_default_device().type == "cpu" and dg.zeros(1).device.type == "cpu"
    if not dg.cuda.is_available():
        with pytest.raises(RuntimeError):
            dg.set_default_device("cuda")
        assert dg.get_default_device().type == "cpu"  # a failed call changes nothing
    dg.set_default_device(None)


def test_module_paths():
    from distgrad.nn.modules.linear import Linear
    from distgrad.nn.modules.loss import CrossEntropyLoss

    assert Linear is dg.nn.Linear and CrossEntropyLoss is dg.nn.CrossEntropyLoss
    assert importlib.import_module("distgrad.nn.modules.module").Module is dg.nn.Module
    assert dg.nn.modules.Linear is dg.nn.Linear
    assert importlib.import_module("distgrad.nn.parallel").data_parallel


def test_tensor_conveniences():
    w = dg.ones(2, 3, dtype=dg.float64)
    assert w.nelement() == 6 and dg.numel(w) == 6
    z = w.new_zeros(4, 1)
    assert z.dtype == dg.float64 and z.shape == (4, 1) and z.tolist() == [[0.0]] * 4
    assert w.new_ones((2,)).tolist() == [1.0, 1.0] and w.new_full((1,), 7).tolist() == [7.0]
    assert w.new_empty(3).shape == (3,) and w.new_tensor([1, 2]).dtype == dg.float64
    assert w.is_cpu and not w.is_xpu and not w.is_mps and not w.is_meta and not w.is_sparse
    t = dg.tensor([1, 2])
    t.unsqueeze_(0)
    assert t.shape == (1, 2)
    with pytest.raises(RuntimeError, match="in place"):
        dg.ones(2, requires_grad=True).unsqueeze_(0)


def test_random_sampler_draws_lazily():
    ds = list(range(10))
    s = dg.data.RandomSampler(ds, replacement=True, num_samples=10**10)
    it = iter(s)
    first = [next(it) for _ in range(100)]
    assert len(s) == 10**10 and all(0 <= i < 10 for i in first)
    s = dg.data.RandomSampler(ds, num_samples=25)
    drawn = list(s)
    assert len(drawn) == 25 and sorted(drawn[:10]) == ds


def test_sgd_momentum_on_a_0d_parameter():
    p = dg.nn.Parameter(dg.tensor(1.0))
    opt = dg.optim.SGD([p], lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        (p * p).backward()
        opt.step()
    # v1 = 2, p = 0.8; v2 = 0.9*2 + 1.6 = 3.4, p = 0.46; v3 = 0.9*3.4 + 0.92 = 3.98, p = 0.062
    assert math.isclose(p.item(), 0.062, rel_tol=1e-5) and p.shape == ()


def test_save_whole_module_says_how():
    with pytest.raises(TypeError, match=r"model\.state_dict\(\).*load_state_dict"):
        dg.save(dg.nn.Linear(2, 2), "/nonexistent/never-written.pt")


def test_distributions_categorical():
    from distgrad.distributions import Categorical

    p = dg.tensor([[0.2, 0.8], [0.5, 0.5]], requires_grad=True)
    m = Categorical(p)
    a = dg.tensor([1, 0])
    lp = m.log_prob(a)
    assert np.allclose(lp.tolist(), [math.log(0.8), math.log(0.5)])
    lp.sum().backward()
    assert np.allclose(p.grad.tolist(), [[-1.0, 0.25], [1.0, -1.0]])
    assert np.allclose(
        m.entropy().tolist(), [-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)), math.log(2)], atol=1e-6
    )
    dg.manual_seed(0)
    draws = Categorical(logits=dg.tensor([0.0, 10.0])).sample((50,))
    assert draws.shape == (50,) and draws.sum().item() >= 45
    with pytest.raises(ValueError):
        Categorical()
