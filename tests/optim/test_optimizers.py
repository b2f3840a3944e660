"""Each built-in optimizer against an independent numpy reference of its update rule (float64,
several steps, two parameter groups, a parameter without gradient)."""

import math

import numpy as np
import pytest

import distgrad as dg
from distgrad import optim

DEFAULTS = {
    "SGD": dict(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False),
    "Adam": dict(
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        maximize=False,
        decoupled_weight_decay=False,
    ),
    "AdamW": dict(
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        maximize=False,
        decoupled_weight_decay=True,
    ),
    "RMSprop": dict(
        lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, maximize=False
    ),
    "Adagrad": dict(
        lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, maximize=False
    ),
}


# ---- numpy references, written from the published update rules -----------------------------
def ref_sgd(theta, grad, st, h):
    g = -grad if h["maximize"] else grad.copy()
    g = g + h["weight_decay"] * theta
    if h["momentum"]:
        st["buf"] = (
            g.copy() if "buf" not in st else h["momentum"] * st["buf"] + (1 - h["dampening"]) * g
        )
        g = g + h["momentum"] * st["buf"] if h["nesterov"] else st["buf"]
    return theta - h["lr"] * g


def ref_adam(theta, grad, st, h):
    b1, b2 = h["betas"]
    t = st["t"] = st.get("t", 0) + 1
    g = -grad if h["maximize"] else grad.copy()
    if h["decoupled_weight_decay"]:
        theta = theta * (1 - h["lr"] * h["weight_decay"])
    else:
        g = g + h["weight_decay"] * theta
    st["m"] = b1 * st.get("m", 0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0) + (1 - b2) * g * g
    v = st["v"]
    if h["amsgrad"]:
        v = st["vmax"] = np.maximum(st.get("vmax", 0), st["v"])
    m_hat = st["m"] / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    return theta - h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])


def ref_rmsprop(theta, grad, st, h):
    a = h["alpha"]
    g = (-grad if h["maximize"] else grad) + h["weight_decay"] * theta
    st["v"] = a * st.get("v", 0) + (1 - a) * g * g
    v = st["v"]
    if h["centered"]:
        st["gbar"] = a * st.get("gbar", 0) + (1 - a) * g
        v = v - st["gbar"] ** 2
    step = g / (np.sqrt(v) + h["eps"])
    if h["momentum"] > 0:
        st["buf"] = h["momentum"] * st.get("buf", 0) + step
        step = st["buf"]
    return theta - h["lr"] * step


def ref_adagrad(theta, grad, st, h):
    t = st["t"] = st.get("t", 0) + 1
    g = (-grad if h["maximize"] else grad) + h["weight_decay"] * theta
    st["sum"] = st.get("sum", h["initial_accumulator_value"]) + g * g
    lr_t = h["lr"] / (1 + (t - 1) * h["lr_decay"])
    return theta - lr_t * g / (np.sqrt(st["sum"]) + h["eps"])


REFERENCES = {
    "SGD": ref_sgd,
    "Adam": ref_adam,
    "AdamW": ref_adam,
    "RMSprop": ref_rmsprop,
    "Adagrad": ref_adagrad,
}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True, betas=(0.7, 0.8))),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.7)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-3, maximize=True)),
]


def _grad(theta, rng):
    """A gradient that depends on the parameter (so an error compounds) plus noise."""
    return np.asarray(np.sin(3 * theta) + 0.5 * rng.standard_normal(theta.shape))


@pytest.mark.parametrize("name,kwargs", CASES, ids=lambda c: str(c))
def test_matches_reference(name, kwargs):
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (5,), ()]
    init = [rng.standard_normal(s) for s in shapes]
    params = [dg.tensor(a, requires_grad=True) for a in init]
    frozen = dg.tensor(rng.standard_normal(2), requires_grad=True)  # never gets a gradient
    # group 1 overrides lr: the reference must follow per-group hyperparameters
    groups = [{"params": params[:2]}, {"params": [params[2], frozen], "lr": 0.03}]
    opt = getattr(optim, name)(groups, **kwargs)
    hypers = [dict(DEFAULTS[name], **kwargs), dict(DEFAULTS[name], **dict(kwargs, lr=0.03))]
    ref_theta, ref_state = [a.copy() for a in init], [{} for _ in init]
    frozen_before = frozen.array.copy()
    for _ in range(6):
        for i, p in enumerate(params):
            g = _grad(ref_theta[i], rng)
            p.grad = dg.tensor(g)
            ref_theta[i] = REFERENCES[name](ref_theta[i], g, ref_state[i], hypers[i // 2])
        assert opt.step() is None
        for p, expected in zip(params, ref_theta):
            np.testing.assert_allclose(p.array, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(frozen.array, frozen_before)
    if name != "Adagrad":  # Adagrad makes every parameter's state up front, as PyTorch
        assert frozen not in opt.state


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_float32_updates_in_place_and_keep_dtype(name):
    p = dg.tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    array, version = p.array, p._version_value
    kwargs = dict(lr=0.1, **({"momentum": 0.9} if name in ("SGD", "RMSprop") else {}))
    opt = getattr(optim, name)([p], **kwargs)
    ref_theta, ref_state, h = p.array.astype(np.float64), {}, dict(DEFAULTS[name], **kwargs)
    for _ in range(3):
        g = np.cos(p.array)
        p.grad = dg.tensor(g)
        ref_theta = REFERENCES[name](ref_theta, g.astype(np.float64), ref_state, h)
        opt.step()
    assert p.array is array and p.dtype == dg.float32
    assert p._version_value > version  # in-place change seen by autograd's version checks
    np.testing.assert_allclose(p.array, ref_theta, rtol=1e-5, atol=1e-6)
    for value in opt.state[p].values():
        if isinstance(value, dg.Tensor) and value.ndim:
            assert value.dtype == dg.float32 and value.shape == p.shape


def test_step_with_gradients_from_backward():
    w = dg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.5, momentum=0.5)
    for _ in range(3):
        opt.zero_grad()
        y = w * w  # d/dw sum(w*w) = 2w
        y.backward(dg.ones_like(y))
        opt.step()
    expected, buf = np.array([1.0, -2.0, 3.0], np.float32), None
    for _ in range(3):
        g = 2 * expected
        buf = g if buf is None else 0.5 * buf + g
        expected = expected - 0.5 * buf
    np.testing.assert_allclose(w.array, expected, rtol=1e-6)
    assert w.requires_grad and w.is_leaf and w.grad_fn is None


def test_hyperparameters_changed_between_steps_take_effect():
    p = dg.tensor(np.ones(3), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = dg.tensor(np.ones(3))
    opt.step()
    opt.param_groups[0]["lr"] = 1.0
    opt.param_groups[0]["momentum"] = 0.5  # turning momentum on later makes its buffer
    opt.step()
    np.testing.assert_allclose(p.array, 1 - 0.1 - 1.0)
    assert "momentum_buffer" in opt.state[p]


def test_amsgrad_and_centered_turned_on_later():
    p = dg.tensor(np.ones(2), requires_grad=True)
    q = dg.tensor(np.ones(2), requires_grad=True)
    adam, rms = optim.Adam([p], lr=0.1), optim.RMSprop([q], lr=0.1)
    for o, t in ((adam, p), (rms, q)):
        t.grad = dg.tensor(np.array([1.0, -1.0]))
        o.step()
    adam.param_groups[0]["amsgrad"] = True
    rms.param_groups[0]["centered"] = True
    rms.param_groups[0]["momentum"] = 0.9
    adam.step()
    rms.step()
    assert {"max_exp_avg_sq"} <= adam.state[p].keys()
    assert {"grad_avg", "momentum_buffer"} <= rms.state[q].keys()
    assert np.all(np.isfinite(p.array)) and np.all(np.isfinite(q.array))


def test_step_counter_is_a_cpu_scalar_tensor():
    p = dg.tensor(np.ones(2), requires_grad=True)
    opt = optim.Adam([p])
    for _ in range(3):
        p.grad = dg.tensor(np.ones(2))
        opt.step()
    step = opt.state[p]["step"]
    assert isinstance(step, dg.Tensor) and step.shape == () and step.item() == 3
    assert step.dtype == dg.float32
    dg.set_default_dtype(dg.float64)
    try:
        opt2 = optim.Adam([p])
        opt2.step()
        assert opt2.state[p]["step"].dtype == dg.float64
    finally:
        dg.set_default_dtype(dg.float32)


def test_adam_bias_correction_first_step_moves_by_lr():
    # after one step m_hat / sqrt(v_hat) = sign(g) (eps aside): every entry moves by lr
    p = dg.tensor(np.zeros(4), requires_grad=True)
    opt = optim.Adam([p], lr=0.01, eps=0.0)
    p.grad = dg.tensor(np.array([3.0, -0.5, 1e-3, -7.0]))
    opt.step()
    np.testing.assert_allclose(p.array, [-0.01, 0.01, -0.01, 0.01], rtol=1e-12)


def test_sgd_converges_on_a_quadratic():
    target = np.array([1.0, -2.0, 0.5])
    p = dg.tensor(np.zeros(3), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(200):
        p.grad = dg.tensor(p.array - target)
        opt.step()
    np.testing.assert_allclose(p.array, target, atol=1e-6)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSprop", "Adagrad"])
def test_adaptive_optimizers_converge(name):
    target = np.array([1.0, -2.0, 0.5])
    p = dg.tensor(np.zeros(3), requires_grad=True)
    opt = getattr(optim, name)([p], lr=0.05, **({"weight_decay": 0} if name == "AdamW" else {}))
    for _ in range(1500):
        p.grad = dg.tensor(p.array - target)
        opt.step()
    np.testing.assert_allclose(p.array, target, atol=0.05)
    assert math.isfinite(float(np.sum(p.array)))


def test_nn_parameters_are_optimized():
    from distgrad.nn.parameter import Parameter

    w = Parameter(dg.tensor(np.array([1.0, 2.0])))
    opt = optim.Adam([w], lr=0.1)
    w.grad = dg.tensor(np.array([1.0, -1.0]))
    opt.step()
    assert isinstance(w, Parameter) and w in opt.state
    np.testing.assert_allclose(w.array, [0.9, 2.1], rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "name,kwargs",
    [
        c
        for c in CASES
        if c[1].get("momentum") or c[1].get("amsgrad") or c[1].get("centered") or c[0] == "Adagrad"
    ],
    ids=lambda c: str(c),
)
def test_cuda_matches_cpu(name, kwargs):
    rng = np.random.default_rng(2)
    init = [rng.standard_normal((3, 4)), np.asarray(rng.standard_normal(()))]
    cpu = [dg.tensor(a, requires_grad=True) for a in init]
    gpu = [dg.tensor(a, device="cuda", requires_grad=True) for a in init]
    o_cpu, o_gpu = getattr(optim, name)(cpu, **kwargs), getattr(optim, name)(gpu, **kwargs)
    for _ in range(4):
        for p, q in zip(cpu, gpu):
            g = np.asarray(np.cos(p.array))
            p.grad, q.grad = dg.tensor(g), dg.tensor(g, device="cuda")
        o_cpu.step()
        o_gpu.step()
    for p, q in zip(cpu, gpu):
        assert q.device.type == "cuda"
        np.testing.assert_allclose(q.numpy(force=True), p.array, rtol=1e-10, atol=1e-12)
    # a GPU optimizer's state loads into a CPU optimizer (moved to the parameters' device)
    fresh = [dg.tensor(a, requires_grad=True) for a in init]
    o_fresh = getattr(optim, name)(fresh, **kwargs)
    o_fresh.load_state_dict(o_gpu.state_dict())
    for p in fresh:
        assert all(
            v.device.type == "cpu" for v in o_fresh.state[p].values() if isinstance(v, dg.Tensor)
        )
