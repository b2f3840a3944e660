"""LBFGS (fixed step and strong-Wolfe line search) and Adadelta: against numpy formulas and
known minima here, against ``torch.optim`` where torch is installed."""

import numpy as np
import pytest

import distgrad as dg
from distgrad import optim


def _rosenbrock(lib, p):
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _run_lbfgs(lib, start, steps, **kwargs):
    p = lib.tensor(np.array(start, dtype=np.float64), requires_grad=True)
    opt = lib.optim.LBFGS([p], **kwargs)
    losses = []

    def closure():
        opt.zero_grad()
        loss = _rosenbrock(lib, p)
        loss.backward()
        return loss

    for _ in range(steps):
        losses.append(float(opt.step(closure).detach()))
    return p.detach().numpy().copy(), losses, opt


def test_lbfgs_strong_wolfe_finds_the_rosenbrock_minimum():
    x, losses, opt = _run_lbfgs(dg, [-1.5, 2.0], 5, line_search_fn="strong_wolfe")
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-4)
    assert losses[0] > losses[-1]
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert state["n_iter"] > 0 and state["func_evals"] >= state["n_iter"]


def test_lbfgs_quadratic_and_errors():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    h = a @ a.T + 6 * np.eye(6)
    b = rng.standard_normal(6)
    w = dg.zeros(6, dtype=dg.float64, requires_grad=True)
    opt = optim.LBFGS(
        [w],
        max_iter=50,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = 0.5 * (w @ dg.tensor(h) @ w) - (dg.tensor(b) * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(w.detach().numpy(), np.linalg.solve(h, b), atol=1e-8)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.LBFGS([w], lr=-1)
    with pytest.raises(RuntimeError, match="only 'strong_wolfe' is supported"):
        optim.LBFGS([w], line_search_fn="backtracking")
    with pytest.raises(ValueError, match="per-parameter options"):
        optim.LBFGS([{"params": [w]}, {"params": [dg.zeros(2, requires_grad=True)]}])


def test_adadelta_matches_its_formula():
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(5)
    p = dg.tensor(p0.copy(), requires_grad=True)
    opt = optim.Adadelta([p], lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)
    v, u, ref = np.zeros(5), np.zeros(5), p0.copy()
    for _ in range(4):
        g = rng.standard_normal(5)
        p.grad = dg.tensor(g.copy())
        opt.step()
        g = g + 0.1 * ref
        v = 0.8 * v + 0.2 * g * g
        delta = np.sqrt(u + 1e-4) / np.sqrt(v + 1e-4) * g
        u = 0.8 * u + 0.2 * delta * delta
        ref = ref - 0.5 * delta
        np.testing.assert_allclose(p.detach().numpy(), ref, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="Invalid rho value: 1.5"):
        optim.Adadelta([p], rho=1.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(line_search_fn="strong_wolfe"),
        dict(lr=0.1),
        dict(lr=1, max_iter=7, history_size=3, line_search_fn="strong_wolfe"),
    ],
    ids=str,
)
def test_lbfgs_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    ours, l1, _ = _run_lbfgs(dg, [-1.2, 1.0], 4, **kwargs)
    theirs, l2, _ = _run_lbfgs(torch, [-1.2, 1.0], 4, **kwargs)
    # same algorithm, same order of operations; the dot products' rounding differs (BLAS vs
    # numpy) and Rosenbrock's curvature amplifies it over the iterations
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(l1, l2, rtol=1e-8, atol=1e-12)


def test_lbfgs_trains_a_model_like_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((32, 4)), rng.standard_normal((32, 1))
    t_model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    t_model = t_model.double()
    d_model = dg.nn.Sequential(dg.nn.Linear(4, 8), dg.nn.Tanh(), dg.nn.Linear(8, 1)).double()
    d_model.load_state_dict({k: dg.tensor(v.numpy()) for k, v in t_model.state_dict().items()})
    results = []
    for lib, model in ((dg, d_model), (torch, t_model)):
        opt = lib.optim.LBFGS(model.parameters(), history_size=5, line_search_fn="strong_wolfe")
        xs, ys = lib.tensor(x), lib.tensor(y)

        def closure(lib=lib, model=model, opt=opt, xs=xs, ys=ys):
            opt.zero_grad()
            loss = lib.nn.functional.mse_loss(model(xs), ys)
            loss.backward()
            return loss

        losses = [float(opt.step(closure).detach()) for _ in range(3)]
        results.append((losses, [p.detach().numpy().copy() for p in model.parameters()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-8)
    # Parameters after ~60 line-search evaluations: BLAS-vs-numpy rounding (and torch's thread
    # count) moves them by up to ~5e-8 here; the losses above agree to 1e-8.
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_lbfgs_state_dict_resumes_identically():
    def make():
        w = dg.tensor(np.array([-1.2, 1.0]), requires_grad=True)
        return w, optim.LBFGS([w], max_iter=3, history_size=4, line_search_fn="strong_wolfe")

    def closure_for(w, opt):
        def closure():
            opt.zero_grad()
            loss = _rosenbrock(dg, w)
            loss.backward()
            return loss

        return closure

    w1, o1 = make()
    o1.step(closure_for(w1, o1))
    w2, o2 = make()
    with dg.no_grad():
        w2.copy_(w1)
    o2.load_state_dict(o1.state_dict())
    o1.step(closure_for(w1, o1))
    o2.step(closure_for(w2, o2))
    np.testing.assert_array_equal(w1.detach().numpy(), w2.detach().numpy())
