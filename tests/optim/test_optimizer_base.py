"""``Optimizer``: parameter groups, zero_grad, closures, hooks, state dicts, errors, a user's
subclass, and that a failing step changes nothing."""

import copy
import pickle
import warnings

import numpy as np
import pytest

import distgrad as dg
from distgrad import optim
from distgrad.optim.optimizer import required

ALL = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
]


def _params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [
        dg.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True)
        for s in ((3, 2), (4,), (2, 2))
    ]


def _set_grads(params, step):
    for i, p in enumerate(params):
        p.grad = dg.tensor(np.cos(p.array * (i + 1) + step))


def _build(name, kwargs, params):
    return getattr(optim, name)(
        [{"params": params[:2]}, {"params": params[2:], "lr": kwargs["lr"] / 2}], **kwargs
    )


class SignMomentum(optim.Optimizer):
    """A user's optimizer: only ``__init__`` and ``step``, written with tensor ops."""

    def __init__(self, params, lr=required, beta=0.9):
        super().__init__(params, dict(lr=lr, beta=beta))

    @dg.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with dg.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "buf" not in state:
                    state["buf"] = dg.zeros_like(p)
                buf = state["buf"]
                buf.mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])
                p.add_(buf.sign(), alpha=-group["lr"])
        return loss


# ---- parameter groups ---------------------------------------------------------------------
def test_param_groups_fill_defaults_and_keep_overrides():
    a, b, c = _params()
    opt = optim.SGD([{"params": [a, b]}, {"params": c, "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert len(opt.param_groups) == 2
    g0, g1 = opt.param_groups
    assert g0["params"][0] is a and g0["params"][1] is b and g1["params"] == [c]
    assert g0["lr"] == 0.1 and g0["momentum"] == 0 and g1["lr"] == 0.5 and g1["momentum"] == 0.9
    assert set(g0) == {
        "params",
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
        "maximize",
    }
    assert opt.defaults["lr"] == 0.1
    assert isinstance(opt.state, dict) and len(opt.state) == 0


def test_params_from_a_generator_and_named_parameters():
    a, b, _ = _params()
    opt = optim.Adam(p for p in (a, b))
    assert len(opt.param_groups[0]["params"]) == 2
    named = optim.SGD([("w", a), ("b", b)], lr=0.1)
    assert named.param_groups[0]["param_names"] == ["w", "b"]
    assert named.param_groups[0]["params"][0] is a
    with pytest.raises(ValueError, match="with/without names"):
        optim.SGD([("w", a), b], lr=0.1)


def test_add_param_group_later_is_optimized():
    a, b, _ = _params()
    opt = optim.SGD([a], lr=0.1)
    opt.add_param_group({"params": [b], "lr": 1.0})
    assert opt.param_groups[1]["momentum"] == 0
    before = b.array.copy()
    b.grad = dg.tensor(np.ones(4))
    opt.step()
    np.testing.assert_allclose(b.array, before - 1.0)


def test_param_group_errors():
    a, b, c = _params()
    with pytest.raises(TypeError, match="iterable of Tensors or dicts, but got .*Tensor"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="ordering of tensors in sets"):
        optim.SGD([{"params": {a, b}}], lr=0.1)
    with pytest.raises(
        TypeError, match="can only optimize Tensors, but one of the params is numpy.ndarray"
    ):
        optim.SGD([a, np.ones(3)], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([a * 2], lr=0.1)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.SGD([{"params": [a, b]}, {"params": [b, c]}], lr=0.1)
    opt = optim.SGD([a, b], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [c, a]})
    assert len(opt.param_groups) == 1  # the failed group was not added
    with pytest.raises(TypeError, match="param_group must be a dict"):
        opt.add_param_group([c])
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optim.SGD([a, a], lr=0.1)


def test_required_hyperparameter():
    a, b, _ = _params()
    with pytest.raises(
        ValueError,
        match="parameter group didn't specify a value of required optimization parameter lr",
    ):
        SignMomentum([a])
    opt = SignMomentum([{"params": [a], "lr": 0.1}])
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        opt.add_param_group({"params": [b]})
    assert repr(required) == "<required parameter>"


HYPERPARAMETER_ERRORS = [
    ("SGD", dict(lr=-0.1), "Invalid learning rate: -0.1"),
    ("SGD", dict(lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    ("SGD", dict(lr=0.1, weight_decay=-1), "Invalid weight_decay value: -1"),
    (
        "SGD",
        dict(lr=0.1, nesterov=True),
        "Nesterov momentum requires a momentum and zero dampening",
    ),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum"),
    ("Adam", dict(lr=-1e-3), "Invalid learning rate: -0.001"),
    ("Adam", dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    ("Adam", dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    ("Adam", dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    ("Adam", dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    ("AdamW", dict(betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5"),
    ("AdamW", dict(lr=float("nan")), "Invalid learning rate: nan"),
    ("RMSprop", dict(alpha=-0.9), "Invalid alpha value: -0.9"),
    ("RMSprop", dict(momentum=-1), "Invalid momentum value: -1"),
    ("RMSprop", dict(eps=-1), "Invalid epsilon value: -1"),
    ("Adagrad", dict(lr_decay=-1), "Invalid lr_decay value: -1"),
    ("Adagrad", dict(initial_accumulator_value=-1), "Invalid initial_accumulator_value value: -1"),
    ("Adagrad", dict(eps=-1), "Invalid epsilon value: -1"),
]


@pytest.mark.parametrize("name,kwargs,message", HYPERPARAMETER_ERRORS)
def test_invalid_hyperparameters(name, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        getattr(optim, name)(_params(), **kwargs)


def test_invalid_hyperparameters_in_a_group():
    a, b, _ = _params()
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.Adam([{"params": [a]}, {"params": [b], "lr": -1}])
    opt = optim.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        opt.add_param_group({"params": [b], "nesterov": True})


# ---- zero_grad, closures, hooks -----------------------------------------------------------
def test_zero_grad():
    a, b, c = _params()
    opt = optim.SGD([a, b, c], lr=0.1)
    _set_grads([a, b], 0)
    opt.zero_grad()
    assert a.grad is None and b.grad is None and c.grad is None
    _set_grads([a, b], 0)
    grad = a.grad
    opt.zero_grad(set_to_none=False)
    assert a.grad is grad and not a.grad.array.any() and not b.grad.array.any()
    assert c.grad is None


def test_params_without_grad_are_skipped():
    a, b, _ = _params()
    opt = optim.Adam([a, b], lr=0.1)
    before = b.array.copy()
    a.grad = dg.tensor(np.ones((3, 2)))
    opt.step()
    np.testing.assert_array_equal(b.array, before)
    assert b not in opt.state and a in opt.state


def test_closure_runs_with_grad_enabled_and_its_loss_is_returned():
    w = dg.tensor([2.0, -1.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.25)
    calls = []

    def closure():
        calls.append(dg.is_grad_enabled())
        opt.zero_grad()
        y = w * w
        y.backward(dg.ones_like(y))
        return float(np.sum(y.detach().numpy()))

    with dg.no_grad():
        loss = opt.step(closure)
    assert calls == [True] and loss == 5.0
    np.testing.assert_allclose(w.array, [2.0 - 0.25 * 4, -1.0 + 0.25 * 2])


def test_step_hooks():
    a, _, _ = _params()
    opt = optim.SGD([a], lr=0.1)
    events = []

    def pre(o, args, kwargs):
        events.append(("pre", o is opt, args, kwargs))

    def post(o, args, kwargs):
        events.append(("post", o is opt, args, kwargs))

    h1, h2 = opt.register_step_pre_hook(pre), opt.register_step_post_hook(post)
    opt.step()
    assert events == [("pre", True, (), {}), ("post", True, (), {})]
    h1.remove()
    h2.remove()
    opt.step()
    assert len(events) == 2


def test_step_pre_hook_can_replace_arguments():
    a, _, _ = _params()
    opt = optim.SGD([a], lr=0.1)
    opt.register_step_pre_hook(lambda o, args, kwargs: ((), {"closure": lambda: 42}))
    assert opt.step() == 42
    opt.register_step_pre_hook(lambda o, args, kwargs: "bad")
    with pytest.raises(RuntimeError, match="must return None or a tuple"):
        opt.step()


def test_hooks_run_once_when_a_subclass_step_calls_super():
    class Counting(optim.SGD):
        def step(self, closure=None):
            self.count = getattr(self, "count", 0) + 1
            return super().step(closure)

    a, _, _ = _params()
    opt = Counting([a], lr=0.1)
    seen = []
    opt.register_step_pre_hook(lambda *args: seen.append("pre"))
    opt.register_step_post_hook(lambda *args: seen.append("post"))
    a.grad = dg.tensor(np.ones((3, 2)))
    opt.step()
    assert seen == ["pre", "post"] and opt.count == 1


# ---- a user's optimizer -------------------------------------------------------------------
def test_custom_optimizer_subclass():
    params = _params()
    opt = SignMomentum([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], lr=0.1)
    ref = [p.array.copy() for p in params]
    bufs = [np.zeros_like(r) for r in ref]
    seen = []
    opt.register_step_post_hook(lambda *args: seen.append(1))
    for step in range(4):
        _set_grads(params, step)
        for i, p in enumerate(params):
            bufs[i] = 0.9 * bufs[i] + 0.1 * p.grad.array
            ref[i] = ref[i] - (0.1 if i < 2 else 0.05) * np.sign(bufs[i])
        opt.step()
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.array, r, rtol=1e-12)
        assert p.is_leaf and p.requires_grad and p.grad_fn is None
    assert len(seen) == 4
    # its state goes through state_dict like a built-in's
    params2 = [dg.tensor(p.array.copy(), requires_grad=True) for p in params]
    opt2 = SignMomentum([{"params": params2[:2]}, {"params": params2[2:]}], lr=0.3)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[1]["lr"] == 0.05
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(opt2.state[q]["buf"].array, opt.state[p]["buf"].array)
        assert opt2.state[q]["buf"] is not opt.state[p]["buf"]
    assert "SignMomentum (" in repr(opt2)


def test_base_step_is_abstract():
    class NoStep(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})

    with pytest.raises(NotImplementedError, match="NoStep does not implement step"):
        NoStep(_params()).step()


# ---- state dicts --------------------------------------------------------------------------
def test_state_dict_format():
    params = _params()
    opt = _build("Adam", dict(lr=0.01, amsgrad=True), params)
    _set_grads(params, 0)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 1, 2]
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.005 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    st = sd["state"][2]
    assert set(st) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert all(isinstance(v, dg.Tensor) for v in st.values())
    assert st["exp_avg"] is opt.state[params[2]]["exp_avg"]  # PyTorch: not copies
    assert opt.param_groups[0]["params"][0] is params[0]  # packing left the groups alone


@pytest.mark.parametrize("through_pickle", [True, False], ids=["pickled", "direct"])
@pytest.mark.parametrize("name,kwargs", ALL)
def test_resume_from_state_dict_matches_uninterrupted_run(name, kwargs, through_pickle):
    uninterrupted = _params()
    opt = _build(name, kwargs, uninterrupted)
    for step in range(6):
        _set_grads(uninterrupted, step)
        opt.step()

    first = _params()
    opt1 = _build(name, kwargs, first)
    for step in range(3):
        _set_grads(first, step)
        opt1.step()
    saved = opt1.state_dict()
    if through_pickle:  # as if written to disk
        saved = pickle.loads(pickle.dumps(saved))
    resumed = [dg.tensor(p.array.copy(), requires_grad=True) for p in first]
    opt2 = _build(name, dict(kwargs, lr=123.0), resumed)  # hyperparameters come from the dict
    opt2.load_state_dict(saved)
    for step in range(3, 6):
        _set_grads(resumed, step)
        opt2.step()
        _set_grads(first, step)  # the original keeps going independently of the copy
        opt1.step()
    for p, q, r in zip(uninterrupted, resumed, first):
        np.testing.assert_array_equal(q.array, p.array)
        np.testing.assert_array_equal(r.array, p.array)


def test_load_state_dict_copies_and_casts_to_the_parameters():
    params = _params()
    opt = optim.Adam(params, lr=0.01)
    _set_grads(params, 0)
    opt.step()
    sd = opt.state_dict()
    params32 = _params(dtype=np.float32)
    opt32 = optim.Adam(params32, lr=0.01)
    opt32.load_state_dict(sd)
    for p, q in zip(params, params32):
        st, st32 = opt.state[p], opt32.state[q]
        assert st32["exp_avg"].dtype == dg.float32
        np.testing.assert_allclose(st32["exp_avg"].array, st["exp_avg"].array, rtol=1e-6)
        assert st32["step"].dtype == st["step"].dtype and st32["step"] is not st["step"]
    sd["state"][0]["exp_avg"].array[...] = 99  # the loaded state is a copy
    assert not (opt32.state[params32[0]]["exp_avg"].array == 99).any()
    sd["param_groups"][0]["lr"] = 5.0
    assert opt32.param_groups[0]["lr"] == 0.01
    assert opt32.param_groups[0]["params"][1] is params32[1]


def test_load_state_dict_size_errors():
    params = _params()
    opt = _build("SGD", dict(lr=0.1, momentum=0.9), params)
    sd = opt.state_dict()
    one_group = optim.SGD(_params(), lr=0.1)
    with pytest.raises(
        ValueError,
        match="different number of parameter groups: 2 in the state dict, 1 in the optimizer",
    ):
        one_group.load_state_dict(sd)
    a, b, c = _params()
    other = optim.SGD([{"params": [a]}, {"params": [b, c]}], lr=0.1)
    with pytest.raises(
        ValueError,
        match="doesn't match the size of optimizer's group: group 0 "
        "has 2 parameters in the state dict, 1 in the optimizer",
    ):
        other.load_state_dict(sd)


def test_optimizer_pickles_and_deep_copies():
    params = _params()
    opt = _build("Adam", dict(lr=0.01), params)
    _set_grads(params, 0)
    opt.step()
    for clone in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
        assert clone.defaults == opt.defaults and len(clone.state) == 3
        clone.register_step_pre_hook(lambda *a: None)
        q = clone.param_groups[0]["params"][0]
        np.testing.assert_array_equal(
            clone.state[q]["exp_avg"].array, opt.state[params[0]]["exp_avg"].array
        )


def test_repr():
    opt = optim.SGD(_params(), lr=0.1, momentum=0.9)
    assert repr(opt) == (
        "SGD (\nParameter Group 0\n    dampening: 0\n    lr: 0.1\n"
        "    maximize: False\n    momentum: 0.9\n    nesterov: False\n"
        "    weight_decay: 0\n)"
    )


# ---- a failing step changes nothing ---------------------------------------------------------
def _snapshot(opt, params):
    return (
        [p.array.copy() for p in params],
        {
            id(p): {k: (v.array.copy() if isinstance(v, dg.Tensor) else v) for k, v in st.items()}
            for p, st in opt.state.items()
        },
    )


def _assert_unchanged(opt, params, snap):
    arrays, state = snap
    for p, a in zip(params, arrays):
        np.testing.assert_array_equal(p.array, a)
    assert {id(p) for p in opt.state} == set(state)
    for p, st in opt.state.items():
        for k, v in st.items():
            np.testing.assert_array_equal(v.array, state[id(p)][k])


@pytest.mark.parametrize("name,kwargs", ALL)
def test_bad_gradient_raises_before_anything_changes(name, kwargs):
    params = _params()
    opt = _build(name, kwargs, params)
    _set_grads(params, 0)
    opt.step()
    _set_grads(params, 1)
    params[2].grad.data = dg.zeros(4, 1, dtype=dg.float64)  # bypasses the grad setter's check
    snap = _snapshot(opt, params)
    with pytest.raises(
        RuntimeError,
        match=rf"{name}.step: the gradient of parameter 0 of param "
        r"group 1 has shape \[4, 1\] but the parameter has "
        r"shape \[2, 2\]; nothing was updated",
    ):
        opt.step()
    _assert_unchanged(opt, params, snap)
    params[2].grad = dg.tensor(np.ones((2, 2)))
    params[1].grad.data = dg.ones(4, dtype=dg.float32)
    with pytest.raises(
        RuntimeError,
        match="parameter 1 of param group 0 has dtype "
        "distgrad.float32 but the parameter has dtype "
        "distgrad.float64",
    ):
        opt.step()
    _assert_unchanged(opt, params, snap)


def test_mismatched_loaded_state_raises_before_anything_changes():
    params = _params()
    opt = optim.Adam(params, lr=0.1)
    _set_grads(params, 0)
    opt.step()
    opt.state[params[2]]["exp_avg_sq"] = dg.zeros(3, dtype=dg.float64)  # load_state_dict
    _set_grads(params, 1)  # refuses such a state (test_load_refuses_wrong_shaped_state)
    snap = _snapshot(opt, params)
    with pytest.raises(
        RuntimeError,
        match=r"state\['exp_avg_sq'\] of parameter 2 of param "
        r"group 0 has shape \[3\]",
    ):
        opt.step()
    _assert_unchanged(opt, params, snap)


def test_load_refuses_wrong_shaped_state():
    params = _params()
    opt = optim.Adam(params, lr=0.1)
    _set_grads(params, 0)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][2]["exp_avg_sq"] = dg.zeros(3, dtype=dg.float64)
    snap = _snapshot(opt, params)
    with pytest.raises(ValueError, match=r"state\['exp_avg_sq'\] of shape \[3\] for parameter 2"):
        opt.load_state_dict(sd)
    _assert_unchanged(opt, params, snap)


def test_update_is_seen_by_autograd_version_checks():
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    y = w * w  # saves w for backward
    w.grad = dg.tensor(np.ones(2, np.float32))
    opt.step()
    with pytest.raises(RuntimeError):
        y.backward(dg.ones_like(y))


def test_no_warning_in_a_plain_training_step():
    params = _params()
    opt = optim.AdamW(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _set_grads(params, 0)
        opt.step()
        opt.zero_grad()
