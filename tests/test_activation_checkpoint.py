"""Activation checkpointing: same gradients as without it (float64), same dropout masks,
nesting, checkpoint_sequential, and the forward really keeps no graph."""

import numpy as np
import pytest

import distgrad as dg
from distgrad import nn
from distgrad.utils import checkpoint, checkpoint_sequential


@pytest.fixture(autouse=True)
def _float64():
    dg.set_default_dtype(dg.float64)
    yield
    dg.set_default_dtype(dg.float32)


def model():
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def gradients(net, run, seed=3):
    """Loss and gradients (parameters, then the input) of ``run(net, x)``."""
    net.zero_grad()
    x = dg.tensor(np.random.default_rng(0).standard_normal((5, 6)), requires_grad=True)
    dg.manual_seed(seed)
    loss = run(net, x).pow(2).sum()
    dg.manual_seed(seed + 100)  # other random draws between forward and backward
    dg.rand(7)
    loss.backward()
    return (
        [loss.detach().numpy()]
        + [p.grad.numpy().copy() for p in net.parameters()]
        + [x.grad.numpy().copy()]
    )


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "run",
    [
        lambda m, x: checkpoint(m, x),
        lambda m, x: m[5](checkpoint(lambda h: m[3:5](checkpoint(m[:3], h)), x)),  # nested
        lambda m, x: checkpoint_sequential(m, 3, x),
        lambda m, x: checkpoint_sequential(list(m), 6, x),
    ],
    ids=["whole", "nested", "sequential3", "sequential6"],
)
def test_gradients_and_dropout_masks_equal_plain_backward(run):
    net = model()
    assert_same(gradients(net, run), gradients(net, lambda m, x: m(x)))


def test_rng_state_is_what_makes_the_masks_equal():
    net = model()
    plain = gradients(net, lambda m, x: m(x))
    unpreserved = gradients(net, lambda m, x: checkpoint(m, x, preserve_rng_state=False))
    np.testing.assert_array_equal(unpreserved[0], plain[0])  # same forward
    assert not np.array_equal(unpreserved[1], plain[1])  # another mask in the recomputation
    # the recomputation leaves the stream where the backward found it
    dg.manual_seed(9)
    y = checkpoint(net, dg.randn(2, 6, requires_grad=True)).sum()
    state = dg.get_rng_state()
    y.backward()
    assert dg.get_rng_state()["bit_generator"] == state["bit_generator"]


def test_forward_keeps_only_inputs_and_several_outputs_work():
    w = dg.randn(4, requires_grad=True)
    calls = []

    def fn(x, scale):
        calls.append(dg.is_grad_enabled())
        h = x * w
        return h.exp() * scale, h.sum()

    x = dg.randn(4, requires_grad=True)
    a, b = checkpoint(fn, x, 2.0)
    assert calls == [False] and a.grad_fn.name() == "CheckpointBackward"
    assert a.grad_fn.next_functions[2][0].variable is x  # the graph goes straight to x
    (a.sum() + b * 3).backward()
    assert calls == [False, True]
    x2, w2 = x.detach().requires_grad_(), w.detach().requires_grad_()
    h = x2 * w2
    ((h.exp() * 2.0).sum() + h.sum() * 3).backward()
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-15)
    np.testing.assert_allclose(w.grad.numpy(), w2.grad.numpy(), rtol=1e-15)


def test_warnings_and_errors():
    net = nn.Linear(3, 2)
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad=True"):
        checkpoint(net, dg.randn(2, 3))
    with pytest.raises(ValueError, match="segments must be between 1 and the number"):
        checkpoint_sequential(nn.Sequential(net), 2, dg.randn(2, 3))
    with pytest.raises(NotImplementedError, match="reentrant"):
        checkpoint(net, dg.randn(2, 3), use_reentrant=False)
    x = dg.randn(2, 3, requires_grad=True)
    y = checkpoint(lambda t: t * 2, x)
    with dg.no_grad():
        x.mul_(3)  # changed after the forward saved it
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
