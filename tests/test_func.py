"""Function transforms (vjp, jvp, grad, jacrev, jacfwd, hessian) against central finite
differences, in float64, for elementwise, reduction, matmul and shape ops."""

import numpy as np
import pytest

import distgrad as dg
from distgrad import func
from distgrad.autograd import Op

EPS = 1e-6
TOL = dict(rtol=1e-6, atol=1e-7, equal_nan=False)


@pytest.fixture(autouse=True)
def _float64():
    dg.set_default_dtype(dg.float64)
    yield
    dg.set_default_dtype(dg.float32)


W = np.random.default_rng(1).standard_normal((3, 4))

# name: (function of tensors, input shapes); inputs are drawn in (0.5, 1.5) * sign
CASES = {
    "exp_sin_mul": (lambda x, y: x.exp() * y.sin(), [(3, 4), (3, 4)]),
    "div_pow_broadcast": (lambda x, y: (x / y) ** 3 - (y * y).sqrt(), [(3, 4), (4,)]),
    "tanh_sigmoid_log": (lambda x: x.tanh() + x.sigmoid() * x.abs().log(), [(5,)]),
    "clamp_where_maximum": (
        lambda x, y: dg.where(x > 0, x * y, dg.maximum(x, y)).clamp(-1, 1),
        [(6,), (6,)],
    ),
    "sum_mean_dims": (lambda x: x.sum(dim=1) * x.mean(dim=0)[:3] + x.pow(2).sum(), [(3, 4)]),
    "logsumexp_softmax": (lambda x: x.logsumexp(dim=-1) + x.softmax(dim=-1)[..., 0], [(2, 5)]),
    "prod_amax_var": (lambda x: x.prod(dim=0) + x.amax(dim=0) + x.var(dim=0), [(3, 4)]),
    "matmul_linear": (lambda x, y: (x @ y).tanh() @ dg.tensor(W).T, [(2, 4), (4, 4)]),
    "bmm_batched": (lambda x, y: dg.matmul(x, y).sum(dim=0), [(2, 3, 4), (2, 4, 2)]),
    "reshape_transpose_cat": (
        lambda x, y: dg.cat([x.reshape(4, 3).T, y], dim=1) * 2,
        [(3, 4), (3, 2)],
    ),
    "stack_index_squeeze": (
        lambda x: dg.stack([x[:, 1:], x[:, :-1]]).unsqueeze(0).squeeze(0)[1, ::2] * x[0, 0],
        [(3, 4)],
    ),
    "permute_expand_flatten": (
        lambda x: (x.permute(2, 0, 1) * dg.ones(3, 1, 1)).flatten(),
        [(2, 1, 3)],
    ),
}


def draw(shapes, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        a = rng.uniform(0.5, 1.5, s) * rng.choice([-1.0, 1.0], s)
        out.append(dg.tensor(a))
    return out


def as_np(t):
    return t.detach().numpy()


def fd_jvp(f, xs, vs):
    """Central finite difference of ``f`` at ``xs`` along ``vs``."""
    with dg.no_grad():
        plus = f(*[x + EPS * v for x, v in zip(xs, vs)])
        minus = f(*[x - EPS * v for x, v in zip(xs, vs)])
    return (as_np(plus) - as_np(minus)) / (2 * EPS)


def fd_jacobian(f, xs, i):
    """Jacobian of ``f`` w.r.t. ``xs[i]`` by central differences: out.shape + xs[i].shape."""
    out = as_np(f(*xs))
    cols = []
    for k in range(xs[i].numel()):
        e = np.zeros(xs[i].numel())
        e[k] = 1
        vs = [dg.zeros(*x.shape) for x in xs]
        vs[i] = dg.tensor(e.reshape(xs[i].shape))
        cols.append(fd_jvp(f, xs, vs))
    return np.stack(cols, axis=-1).reshape(out.shape + tuple(xs[i].shape))


@pytest.mark.parametrize("name", CASES)
def test_jvp_and_vjp_match_finite_differences(name):
    f, shapes = CASES[name]
    xs, vs = draw(shapes), draw(shapes, seed=1)
    out, jv = func.jvp(f, xs, vs)
    np.testing.assert_allclose(as_np(out), as_np(f(*xs)), **TOL)
    np.testing.assert_allclose(as_np(jv), fd_jvp(f, xs, vs), **TOL)
    assert not jv.requires_grad and not out.requires_grad
    u = draw([out.shape], seed=2)[0]
    out2, vjp_fn = func.vjp(f, *xs)
    gs = vjp_fn(u)
    assert len(gs) == len(xs)
    # <u, J v> computed both ways
    lhs = sum(float((as_np(g) * as_np(v)).sum()) for g, v in zip(gs, vs))
    np.testing.assert_allclose(lhs, float((as_np(u) * fd_jvp(f, xs, vs)).sum()), **TOL)


@pytest.mark.parametrize(
    "name",
    ["exp_sin_mul", "div_pow_broadcast", "matmul_linear", "reshape_transpose_cat", "sum_mean_dims"],
)
def test_jacobians_match_finite_differences(name):
    f, shapes = CASES[name]
    xs = draw(shapes)
    argnums = tuple(range(len(xs)))
    rev, fwd = func.jacrev(f, argnums)(*xs), func.jacfwd(f, argnums)(*xs)
    for i in argnums:
        expected = fd_jacobian(f, xs, i)
        np.testing.assert_allclose(as_np(rev[i]), expected, **TOL)
        np.testing.assert_allclose(as_np(fwd[i]), expected, **TOL)


def test_grad_argnums_has_aux_and_hessian():
    def loss(w, x):
        return ((x @ w).tanh() ** 2).sum(), "aux"

    w, x = draw([(4, 2), (3, 4)])
    (gw, gx), aux = func.grad(loss, argnums=(0, 1), has_aux=True)(w, x)
    assert aux == "aux"
    scalar = lambda w, x: loss(w, x)[0].reshape(1)  # noqa: E731
    np.testing.assert_allclose(as_np(gw), fd_jacobian(scalar, [w, x], 0)[0], **TOL)
    np.testing.assert_allclose(as_np(gx), fd_jacobian(scalar, [w, x], 1)[0], **TOL)
    g, value = func.grad_and_value(lambda x: (x.exp() * x).sum())(x)
    np.testing.assert_allclose(value.item(), float((np.exp(as_np(x)) * as_np(x)).sum()))

    def f(x):
        return (x.sin() * x.sum() + x.pow(3)).sum()

    y = draw([(4,)])[0]
    h = func.hessian(f)(y)
    grad_f = lambda y: func.grad(f)(y)  # noqa: E731
    np.testing.assert_allclose(as_np(h), fd_jacobian(grad_f, [y], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(as_np(h), as_np(h).T, rtol=1e-12)


def test_transforms_nest_without_perturbation_confusion():
    x = dg.tensor(2.0)
    # d/dx [x * (d/dy x*y)] = d/dx x^2 = 2x; confusing y with x would give 3x^2... = 12
    assert func.grad(lambda x: x * func.grad(lambda y: x * y)(x))(x).item() == 4.0
    # jvp of a gradient: a Hessian-vector product, H = diag(6x) for sum(x^3)
    v = dg.tensor([1.0, 2.0])
    _, hvp = func.jvp(func.grad(lambda x: (x**3).sum()), (dg.tensor([1.0, 3.0]),), (v,))
    np.testing.assert_allclose(hvp.numpy(), [6.0, 36.0])
    # primals that require grad keep the graph, for an outer backward
    w = dg.tensor([1.0, 2.0], requires_grad=True)
    _, jv = func.jvp(lambda w: w**2, (w,), (dg.ones(2),))
    jv.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 2.0])


def test_errors():
    x = dg.randn(3)
    with pytest.raises(ValueError, match="tangents 0 must be a tensor of shape \\[3\\]"):
        func.jvp(lambda x: x * 2, (x,), (dg.randn(4),))
    with pytest.raises(TypeError, match="floating point"):
        func.vjp(lambda x: x, dg.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="one-element tensor"):
        func.grad(lambda x: x * 2)(x)
    with pytest.raises(TypeError, match="return a Tensor"):
        func.vjp(lambda x: 3.0, x)

    class Once(Op):
        once_differentiable = True

        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    with pytest.raises(RuntimeError, match="not differentiable twice"):
        func.jvp(Once.apply, (x,), (x,))
    assert func.vjp(lambda x: dg.ones(3), x)[1](dg.ones(3))[0].numpy().tolist() == [0, 0, 0]
