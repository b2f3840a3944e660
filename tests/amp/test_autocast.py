"""autocast: inputs cast by each op's declared policy, gradients in the parameters' dtype,
nesting/decorator forms, and an AMP training run that converges like float32."""

import numpy as np
import pytest

import distgrad as dg
from distgrad import amp, nn
from distgrad.autograd import function
from distgrad.nn import functional as F
from distgrad.ops import conv, elementwise, linalg, loss, normalization, reduction

LOW = [dg.float16] + ([dg.bfloat16] if dg.bfloat16 is not None else [])


@pytest.fixture(autouse=True)
def seed():
    dg.manual_seed(0)
    yield
    assert not function._interceptors  # every region took its interceptor away


def test_policies_are_declared_on_the_op_classes():
    for op in (linalg.Matmul, linalg.Linear, linalg.Einsum, conv.Conv, conv.ConvTranspose):
        assert op.autocast == "lower"
    for op in (
        reduction.Sum,
        reduction.Mean,
        reduction.Softmax,
        reduction.LogSoftmax,
        reduction.LogSumExp,
        reduction.Norm2,
        reduction.Var,
        elementwise.Exp,
        elementwise.Log,
        elementwise.Pow,
        normalization.Normalize,
        loss.CrossEntropy,
        loss.MSELoss,
    ):
        assert op.autocast == "float32"
    assert elementwise.Add.autocast is None and elementwise.Tanh.autocast is None


@pytest.mark.parametrize("low", LOW, ids=str)
def test_ops_run_in_the_dtype_of_their_policy(low):
    a, b = dg.randn(3, 4), dg.randn(4, 2)
    w = dg.randn(5, 4, requires_grad=True)
    with amp.autocast(dtype=low):
        assert amp.is_autocast_enabled() and amp.get_autocast_dtype() is low
        mm = a @ b
        assert mm.dtype is low
        assert F.linear(a, w).dtype is low
        assert dg.einsum("ij,jk->ik", a, b).dtype is low
        assert (mm + dg.randn(3, 2)).dtype is dg.float32  # promoted to the widest
        assert mm.tanh().dtype is low  # no policy: stays in its input's dtype
        for out in (
            mm.sum(),
            mm.mean(dim=0),
            F.softmax(mm, -1),
            F.log_softmax(mm, -1),
            mm.exp(),
            mm.abs().log(),
            mm**2,
            dg.logsumexp(mm, 1),
            mm.norm(),
            F.layer_norm(mm, (2,)),
            F.mse_loss(mm, dg.zeros(3, 2)),
        ):
            assert out.dtype is dg.float32
        assert (
            dg.randn(2, 2, dtype=dg.float64) @ dg.randn(2, 2, dtype=dg.float64)
        ).dtype is dg.float64  # float64 is never cast
        assert F.conv2d(dg.randn(1, 2, 5, 5), dg.randn(3, 2, 3, 3)).dtype is low
    assert not amp.is_autocast_enabled()
    assert (a @ b).dtype is dg.float32


def test_low_precision_results_are_close_to_float32():
    a, b = dg.randn(8, 16), dg.randn(16, 4)
    with amp.autocast(dtype=dg.float16):
        got = (a @ b).float()
    np.testing.assert_allclose(got.numpy(), (a @ b).numpy(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("low", LOW, ids=str)
def test_gradients_of_float32_parameters_are_float32(low):
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 3))
    x, target = dg.randn(4, 6), dg.tensor([0, 2, 1, 0])
    reference = [g.copy() for g in _grads(model, x, target)]
    with amp.autocast(dtype=low):
        logits = model(x)
        loss_value = F.cross_entropy(logits, target)
    assert logits.dtype is low and loss_value.dtype is dg.float32
    model.zero_grad()
    loss_value.backward()
    for p, ref in zip(model.parameters(), reference):
        assert p.grad.dtype is dg.float32
        np.testing.assert_allclose(p.grad.numpy(), ref, rtol=0.1, atol=0.03)


def _grads(model, x, target):
    model.zero_grad()
    F.cross_entropy(model(x), target).backward()
    return [p.grad.numpy() for p in model.parameters()]


def test_cnn_with_batch_norm_under_autocast():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 2),
    )
    with amp.autocast(dtype=dg.float16):
        out = model(dg.randn(2, 1, 8, 8))
    assert out.dtype is dg.float16
    out.float().sum().backward()
    assert all(p.grad.dtype is dg.float32 for p in model.parameters())
    assert model[1].running_mean.dtype is dg.float32


def test_nesting_decorator_and_call_forms():
    a = dg.randn(2, 2)
    with amp.autocast("cpu", dtype=dg.float16):
        with amp.autocast(enabled=False):
            assert (a @ a).dtype is dg.float32
            assert not amp.is_autocast_enabled()
        assert (a @ a).dtype is dg.float16

    @amp.autocast(dg.float16)
    def product(x):
        return x @ x

    assert product(a).dtype is dg.float16
    assert (a @ a).dtype is dg.float32


def test_bad_arguments():
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        amp.autocast(dtype=dg.float32)
    with pytest.raises(ValueError, match="device_type"):
        amp.autocast("tpu")


def test_mismatched_dtypes_still_raise_outside_autocast():
    with pytest.raises(RuntimeError, match="same dtype"):
        dg.randn(2, 2) @ dg.randn(2, 2).half()


def _train_digits(use_amp: bool, epochs: int = 8):
    """An MLP on the digits, Adam, batch 64; returns (final train loss, test accuracy)."""
    X, y, Xt, yt = dg.data.datasets.load_digits()
    dg.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = dg.optim.Adam(model.parameters(), lr=3e-3)
    scaler = amp.GradScaler(init_scale=2.0**12, enabled=use_amp)
    order = np.random.default_rng(0)
    for _ in range(epochs):
        total = 0.0
        perm = order.permutation(len(X))
        for start in range(0, len(X), 64):
            idx = dg.tensor(perm[start : start + 64])
            with amp.autocast(dtype=dg.float16, enabled=use_amp):
                loss_value = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad()
            scaler.scale(loss_value).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss_value.item()) * len(idx)
    with dg.no_grad():
        accuracy = float((model(Xt).argmax(1) == yt).float().mean().item())
    return total / len(X), accuracy


@pytest.mark.slow
def test_amp_training_converges_like_float32():
    """float16 autocast + GradScaler on the digits MLP (same seed, data order and init as the
    float32 run) reaches float32's quality: test accuracy >= 0.95 and within 0.02 of float32's,
    mean training loss of the last epoch within 0.03 of float32's."""
    loss32, acc32 = _train_digits(False)
    loss16, acc16 = _train_digits(True)
    assert acc32 >= 0.95 and acc16 >= 0.95
    assert abs(acc16 - acc32) <= 0.02
    assert abs(loss16 - loss32) <= 0.03
