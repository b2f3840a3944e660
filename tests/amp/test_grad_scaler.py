"""GradScaler: scaling and unscaling, steps skipped on inf/NaN with parameters and optimizer
state untouched, growth and backoff of the scale, checkpoints, and the inf/NaN decision agreed
across MPI ranks."""

import math
from pathlib import Path

import numpy as np
import pytest

import distgrad as dg
from distgrad import amp, nn
from tests import mpijob
from tests.mpijob import requires_mpi


def _setup(lr=0.1):
    dg.manual_seed(0)
    model = nn.Linear(3, 2)
    return model, dg.optim.Adam(model.parameters(), lr=lr)


def _backward(model, scaler, x=None):
    x = dg.randn(4, 3) if x is None else x
    loss = (model(x) ** 2).mean()
    scaler.scale(loss).backward()
    return loss


def test_scale_and_unscale_give_the_true_gradients():
    model, opt = _setup()
    x = dg.randn(4, 3)
    (model(x) ** 2).mean().backward()
    expected = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    scaler = amp.GradScaler(init_scale=1024.0)
    loss = (model(x) ** 2).mean()
    assert scaler.scale(loss).item() == pytest.approx(1024 * loss.item(), rel=1e-6)
    loss2 = scaler.scale(loss)
    loss2.backward()
    np.testing.assert_allclose(model.weight.grad.numpy(), 1024 * expected[0], rtol=1e-5)
    scaler.unscale_(opt)
    for p, e in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad.numpy(), e, rtol=1e-5)
    scaled = scaler.scale([loss, (loss,)])
    assert isinstance(scaled, list) and isinstance(scaled[1], tuple)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_step_is_skipped_on_inf_or_nan_and_the_scale_backs_off(bad):
    model, opt = _setup()
    scaler = amp.GradScaler(init_scale=256.0, growth_interval=2)
    _backward(model, scaler)
    scaler.step(opt)  # a good step: creates the optimizer state
    scaler.update()
    params = [p.detach().numpy().copy() for p in model.parameters()]
    state = {k: v.numpy().copy() for k, v in opt.state[model.weight].items()}
    opt.zero_grad()
    _backward(model, scaler)
    model.bias.grad.array[0] = bad
    assert scaler.step(opt) is None
    scaler.update()
    for p, before in zip(model.parameters(), params):
        np.testing.assert_array_equal(p.detach().numpy(), before)
    for k, v in opt.state[model.weight].items():
        np.testing.assert_array_equal(v.numpy(), state[k])
    assert scaler.get_scale() == 128.0
    assert scaler.state_dict()["_growth_tracker"] == 0


def test_good_steps_update_and_the_scale_grows_every_interval():
    model, opt = _setup()
    scaler = amp.GradScaler(init_scale=4.0, growth_factor=3.0, growth_interval=3)
    scales = []
    for _ in range(7):
        before = model.weight.detach().numpy().copy()
        opt.zero_grad()
        _backward(model, scaler)
        scaler.step(opt)
        scaler.update()
        assert not np.array_equal(model.weight.detach().numpy(), before)
        scales.append(scaler.get_scale())
    assert scales == [4.0, 4.0, 12.0, 12.0, 12.0, 36.0, 36.0]


def test_update_with_a_new_scale_and_call_order_errors():
    model, opt = _setup()
    scaler = amp.GradScaler()
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()
    _backward(model, scaler)
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    scaler.update(new_scale=8.0)
    assert scaler.get_scale() == 8.0
    with pytest.raises(ValueError, match="growth_factor"):
        amp.GradScaler(growth_factor=0.5)


def test_state_dict_round_trip_and_disabled_scaler():
    scaler = amp.GradScaler(init_scale=32.0, growth_interval=5)
    model, opt = _setup()
    _backward(model, scaler)
    scaler.step(opt)
    scaler.update()
    other = amp.GradScaler()
    other.load_state_dict(scaler.state_dict())
    assert (
        other.state_dict()
        == scaler.state_dict()
        == {
            "scale": 32.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 5,
            "_growth_tracker": 1,
        }
    )

    off = amp.GradScaler(enabled=False)
    loss = (model(dg.randn(2, 3)) ** 2).mean()
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and off.state_dict() == {}
    loss.backward()
    before = model.weight.detach().numpy().copy()
    off.step(opt)
    off.update()
    assert not np.array_equal(model.weight.detach().numpy(), before)


@requires_mpi
@pytest.mark.multiprocess
def test_inf_decision_is_agreed_across_ranks():
    """Only rank 1 sees an inf; both ranks skip the step and back off the scale."""
    mpijob.run(Path(__file__).parent / "workers" / "scaler_ranks.py", n=2, timeout=120).check()
