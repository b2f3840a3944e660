"""Learning-rate schedulers: the sequence of learning rates against closed forms written from
PyTorch's documented formulas, state-dict resumption, and errors."""

import math
import pickle
import warnings

import numpy as np
import pytest

import distgrad as dg
from distgrad import optim
from distgrad.optim import lr_scheduler as S

BASE = (0.1, 0.2)


def _optimizer(cls=optim.SGD, **kwargs):
    a, b = dg.zeros(2, requires_grad=True), dg.zeros(3, requires_grad=True)
    kwargs.setdefault("lr", BASE[0])
    return cls([{"params": [a]}, {"params": [b], "lr": BASE[1]}], **kwargs)


def _lrs(opt, sched, steps):
    """The learning rates in force at epochs 0..steps-1 (read after each scheduler step)."""
    out = []
    for _ in range(steps):
        assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        out.append(sched.get_last_lr())
        opt.step()
        sched.step()
    return np.array(out)


def _expected(fn, steps):
    return np.array([[fn(t, base) for base in BASE] for t in range(steps)])


def _cos_anneal(start, end, pct):
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


CLOSED_FORMS = {
    "StepLR": (
        lambda o: S.StepLR(o, step_size=3, gamma=0.5),
        lambda t, base: base * 0.5 ** (t // 3),
    ),
    "MultiStepLR": (
        lambda o: S.MultiStepLR(o, milestones=[9, 2, 5, 5], gamma=0.3),
        lambda t, base: base * 0.3 ** sum(m <= t for m in [2, 5, 5, 9]),
    ),
    "ExponentialLR": (lambda o: S.ExponentialLR(o, gamma=0.9), lambda t, base: base * 0.9**t),
    "CosineAnnealingLR": (
        lambda o: S.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
        lambda t, base: 0.01 + (base - 0.01) * (1 + math.cos(math.pi * t / 7)) / 2,
    ),
    "LambdaLR": (lambda o: S.LambdaLR(o, lambda e: 1 / (e + 1)), lambda t, base: base / (t + 1)),
    "ConstantLR": (
        lambda o: S.ConstantLR(o, factor=0.25, total_iters=4),
        lambda t, base: base * (0.25 if t < 4 else 1.0),
    ),
    "LinearLR": (
        lambda o: S.LinearLR(o, start_factor=0.1, end_factor=0.8, total_iters=6),
        lambda t, base: base * (0.1 + 0.7 * min(t, 6) / 6),
    ),
    "LinearLR-decay": (
        lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=5),
        lambda t, base: base * (1 - min(t, 5) / 5),
    ),
    "SequentialLR": (
        lambda o: S.SequentialLR(
            o, [S.LinearLR(o, 0.1, total_iters=4), S.CosineAnnealingLR(o, T_max=8)], [4]
        ),
        lambda t, base: (
            base * (0.1 + 0.9 * t / 4)
            if t < 4
            else base * (1 + math.cos(math.pi * (t - 4) / 8)) / 2
        ),
    ),
    "OneCycleLR": (
        lambda o: S.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=20),
        lambda t, base: _one_cycle(t, 10 * base),
    ),
}


def _one_cycle(t, max_lr, total=20, pct=0.3):
    initial, end_warm = max_lr / 25, pct * total - 1
    if t <= end_warm:
        return _cos_anneal(initial, max_lr, t / end_warm)
    return _cos_anneal(max_lr, initial / 1e4, (t - end_warm) / (total - 1 - end_warm))


@pytest.mark.parametrize("kind", list(CLOSED_FORMS))
def test_learning_rates_follow_the_closed_form(kind):
    make, formula = CLOSED_FORMS[kind]
    opt = _optimizer()
    sched = make(opt)
    steps = 20 if kind == "OneCycleLR" else 25
    np.testing.assert_allclose(
        _lrs(opt, sched, steps), _expected(formula, steps), rtol=1e-10, atol=1e-14
    )


def test_lambda_lr_per_group():
    opt = _optimizer()
    sched = S.LambdaLR(opt, [lambda e: 1 / (e + 1), lambda e: 0.5**e])
    expected = [[BASE[0] / (t + 1), BASE[1] * 0.5**t] for t in range(6)]
    np.testing.assert_allclose(_lrs(opt, sched, 6), expected, rtol=1e-14)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        S.LambdaLR(_optimizer(), [lambda e: 1.0])


def test_one_cycle_three_phase_linear_with_momentum():
    opt = _optimizer(momentum=0.9)
    sched = S.OneCycleLR(
        opt,
        max_lr=1.0,
        total_steps=20,
        pct_start=0.25,
        three_phase=True,
        anneal_strategy="linear",
        div_factor=10.0,
        final_div_factor=100.0,
        base_momentum=0.8,
        max_momentum=0.9,
    )

    def lin(a, b, pct):
        return a + (b - a) * pct

    def expected(t):
        # phases end at steps 4, 8 and 19: up, back down to the initial lr, down to the minimum
        if t <= 4:
            return lin(0.1, 1.0, t / 4), lin(0.9, 0.8, t / 4)
        if t <= 8:
            return lin(1.0, 0.1, (t - 4) / 4), lin(0.8, 0.9, (t - 4) / 4)
        return lin(0.1, 0.001, (t - 8) / 11), 0.9

    for t in range(20):
        lr, momentum = expected(t)
        assert sched.get_last_lr() == pytest.approx([lr, lr], rel=1e-12)
        assert [g["momentum"] for g in opt.param_groups] == pytest.approx([momentum] * 2)
        opt.step()
        sched.step()
    with pytest.raises(
        ValueError, match="Tried to step 21 times. The specified number of total steps is 20"
    ):
        sched.step()


def test_one_cycle_cycles_adam_beta1_and_takes_epochs():
    opt = _optimizer(optim.Adam, betas=(0.9, 0.99))
    sched = S.OneCycleLR(opt, max_lr=0.5, epochs=2, steps_per_epoch=5, pct_start=0.5)
    assert sched.total_steps == 10
    assert [g["betas"] for g in opt.param_groups] == [(0.95, 0.99)] * 2
    for _ in range(4):
        opt.step()
        sched.step()
    beta1 = _cos_anneal(0.95, 0.85, 4 / 4)  # the end of the warm-up phase (step 4)
    assert [g["betas"][0] for g in opt.param_groups] == pytest.approx([beta1] * 2)
    assert sched.get_last_lr() == pytest.approx([0.5, 0.5])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(max_lr=1.0), r"You must define either total_steps OR \(epochs AND steps_per_epoch\)"),
        (dict(max_lr=1.0, total_steps=0), "Expected positive integer total_steps, but got 0"),
        (dict(max_lr=1.0, epochs=-1, steps_per_epoch=3), "Expected positive integer epochs"),
        (dict(max_lr=1.0, total_steps=10, pct_start=1), "Expected float between 0 and 1 pct_start"),
        (dict(max_lr=1.0, total_steps=10, anneal_strategy="exp"), "anneal_strategy must be one of"),
        (
            dict(max_lr=[1.0], total_steps=10),
            "max_lr must have the same length as "
            "optimizer.param_groups. max_lr has 1 values, "
            "param_groups has 2.",
        ),
    ],
)
def test_one_cycle_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S.OneCycleLR(_optimizer(), **kwargs)


def test_one_cycle_needs_momentum_to_cycle_it():
    a = dg.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        S.OneCycleLR(optim.Adagrad([a]), max_lr=1.0, total_steps=10)
    S.OneCycleLR(optim.Adagrad([a]), max_lr=1.0, total_steps=10, cycle_momentum=False)


def test_scheduler_errors():
    with pytest.raises(TypeError, match="SGD_like is not an Optimizer"):
        S.StepLR(type("SGD_like", (), {})(), 3)
    with pytest.raises(
        KeyError,
        match=r"param 'initial_lr' is not specified in "
        r"param_groups\[0\]",
    ):
        S.StepLR(_optimizer(), 3, last_epoch=5)
    with pytest.raises(
        ValueError, match="Constant multiplicative factor expected to be between 0 and 1"
    ):
        S.ConstantLR(_optimizer(), factor=1.5)
    with pytest.raises(
        ValueError, match="Starting multiplicative factor expected to be greater than 0"
    ):
        S.LinearLR(_optimizer(), start_factor=0)
    with pytest.raises(ValueError, match="Ending multiplicative factor expected to be between"):
        S.LinearLR(_optimizer(), end_factor=1.5)
    opt = _optimizer()
    with pytest.raises(
        ValueError, match="number of schedulers 2 and the number of milestones to be equal to 2"
    ):
        S.SequentialLR(opt, [S.StepLR(opt, 2), S.StepLR(opt, 3)], milestones=[2, 4])
    with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
        S.SequentialLR(opt, [S.StepLR(opt, 2), S.StepLR(_optimizer(), 3)], milestones=[2])
    with pytest.raises(ValueError, match="expects at least one scheduler"):
        S.SequentialLR(opt, [], milestones=[])


def test_warns_when_scheduler_steps_before_optimizer():
    opt = _optimizer()
    sched = S.StepLR(opt, 2)
    with pytest.warns(
        UserWarning,
        match=r"Detected call of `lr_scheduler.step\(\)` before "
        r"`optimizer.step\(\)`",
    ):
        sched.step()
    opt2 = _optimizer()
    sched2 = S.StepLR(opt2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            opt2.step()
            sched2.step()


def test_step_with_an_epoch_uses_the_closed_form():
    opt = _optimizer()
    sched = S.CosineAnnealingLR(opt, T_max=10)
    opt.step()
    with pytest.warns(UserWarning, match="deprecated"):
        sched.step(4)
    assert sched.last_epoch == 4
    assert sched.get_last_lr() == pytest.approx(
        [b * (1 + math.cos(math.pi * 0.4)) / 2 for b in BASE]
    )


def test_state_dict_excludes_the_optimizer_and_functions():
    class Factor:
        def __init__(self):
            self.scale = 2.0

        def __call__(self, epoch):
            return self.scale * 0.5**epoch

    opt = _optimizer()
    factor = Factor()
    sched = S.LambdaLR(opt, [lambda e: 1.0, factor])
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["lr_lambdas"] == [None, {"scale": 2.0}]
    assert sd["base_lrs"] == list(BASE) and sd["last_epoch"] == 0
    pickle.dumps(sd)
    factor2 = Factor()
    factor2.scale = 7.0
    sched2 = S.LambdaLR(_optimizer(), [lambda e: 1.0, factor2])
    sched2.load_state_dict(sd)
    assert factor2.scale == 2.0
    seq = S.SequentialLR(opt, [S.ConstantLR(opt), S.ExponentialLR(opt, 0.5)], [3])
    sd = seq.state_dict()
    assert "optimizer" not in sd and [
        set(s) >= {"last_epoch", "base_lrs"} for s in sd["_schedulers"]
    ] == [True, True]
    pickle.dumps(sd)


@pytest.mark.parametrize(
    "kind", ["StepLR", "CosineAnnealingLR", "LinearLR", "SequentialLR", "OneCycleLR", "MultiStepLR"]
)
def test_resume_gives_the_uninterrupted_schedule(kind):
    make, _ = CLOSED_FORMS[kind]
    opt = _optimizer(momentum=0.9)
    full = _lrs(opt, make(opt), 18)

    opt1 = _optimizer(momentum=0.9)
    sched1 = make(opt1)
    first = _lrs(opt1, sched1, 7)
    saved = pickle.loads(pickle.dumps({"opt": opt1.state_dict(), "sched": sched1.state_dict()}))
    opt2 = _optimizer(momentum=0.9)
    sched2 = make(opt2)  # build the scheduler first, then load both (PyTorch's recipe)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    rest = _lrs(opt2, sched2, 11)
    np.testing.assert_array_equal(np.concatenate([first, rest]), full)
