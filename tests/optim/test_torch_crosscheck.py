"""Optional cross-check against PyTorch's optimizers and schedulers (skipped when torch is not
importable); the main tests use independent numpy references and need no torch."""

import numpy as np
import pytest

import distgrad as dg
from distgrad import optim

torch = pytest.importorskip("torch")

OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1, maximize=True)),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS)
def test_optimizer_matches_torch(name, kwargs):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ours = [dg.tensor(a, requires_grad=True) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    o1 = getattr(optim, name)(ours, **kwargs)
    o2 = getattr(torch.optim, name)(theirs, **kwargs)
    for _ in range(6):
        for p, q in zip(ours, theirs):
            g = np.sin(3 * p.array) + rng.standard_normal(p.shape)
            p.grad = dg.tensor(g)
            q.grad = torch.tensor(g)
        o1.step()
        o2.step()
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-13, atol=1e-13)
    sd1, sd2 = o1.state_dict(), o2.state_dict()
    assert sd1["state"].keys() == sd2["state"].keys()
    for i, st in sd2["state"].items():
        assert st.keys() == sd1["state"][i].keys()
        for k, v in st.items():
            np.testing.assert_allclose(np.asarray(sd1["state"][i][k]), v.numpy(), rtol=1e-13)
    for g1, g2 in zip(sd1["param_groups"], sd2["param_groups"]):
        assert g1["params"] == g2["params"]
        assert {k: v for k, v in g2.items() if k in g1} == g1


def _schedulers(lib, opt):
    S = lib.optim.lr_scheduler
    return {
        "step": lambda: S.StepLR(opt, 3, gamma=0.5),
        "multistep": lambda: S.MultiStepLR(opt, [2, 5, 5, 9], gamma=0.3),
        "exp": lambda: S.ExponentialLR(opt, 0.9),
        "cos": lambda: S.CosineAnnealingLR(opt, T_max=7, eta_min=0.01),
        "lambda": lambda: S.LambdaLR(opt, lambda e: 1 / (e + 1)),
        "constant": lambda: S.ConstantLR(opt, factor=0.25, total_iters=4),
        "linear": lambda: S.LinearLR(opt, start_factor=0.1, end_factor=0.8, total_iters=6),
        "onecycle": lambda: S.OneCycleLR(opt, max_lr=[1.0, 2.0], total_steps=20),
        "onecycle3": lambda: S.OneCycleLR(
            opt,
            max_lr=1.0,
            total_steps=20,
            three_phase=True,
            anneal_strategy="linear",
            pct_start=0.25,
        ),
        "sequential": lambda: S.SequentialLR(
            opt,
            [S.LinearLR(opt, 0.1, total_iters=4), S.CosineAnnealingLR(opt, T_max=8)],
            milestones=[4],
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "step",
        "multistep",
        "exp",
        "cos",
        "lambda",
        "constant",
        "linear",
        "onecycle",
        "onecycle3",
        "sequential",
    ],
)
def test_scheduler_matches_torch(kind):
    pa, pb = dg.zeros(2, requires_grad=True), dg.zeros(2, requires_grad=True)
    o1 = optim.SGD([{"params": [pa]}, {"params": [pb], "lr": 0.2}], lr=0.1, momentum=0.9)
    ta, tb = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    o2 = torch.optim.SGD([{"params": [ta]}, {"params": [tb], "lr": 0.2}], lr=0.1, momentum=0.9)
    s1 = _schedulers(dg, o1)[kind]()
    s2 = _schedulers(torch, o2)[kind]()
    for _ in range(20 if "onecycle" in kind else 25):
        assert s1.get_last_lr() == pytest.approx(s2.get_last_lr(), rel=1e-14, abs=1e-15)
        assert [g["momentum"] for g in o1.param_groups] == pytest.approx(
            [g["momentum"] for g in o2.param_groups], rel=1e-14
        )
        o1.step()
        o2.step()
        s1.step()
        s2.step()
