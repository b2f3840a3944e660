"""issue 19's new ops against torch in float64: forward values and the gradient of every
input for the same upstream gradient; indices and non-differentiable results compared
directly. Skipped without torch."""

import numpy as np
import pytest

import distgrad as dg

torch = pytest.importorskip("torch")


def _arrays(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def _check(f_ours, f_torch, arrays, seed=0, tol=1e-10):
    ours = [dg.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, yt = f_ours(*ours), f_torch(*theirs)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    g = np.random.default_rng(seed + 1).standard_normal(tuple(yt.shape))
    y.backward(dg.tensor(g))
    yt.backward(torch.tensor(g))
    for a, at in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), at.grad.numpy(), rtol=tol, atol=tol)


DIFFERENTIABLE = {
    "sort": (lambda m, x: m.sort(x, 1).values, [(4, 7)]),
    "sort_desc_dim0": (lambda m, x: m.sort(x, 0, descending=True).values, [(5, 3)]),
    "msort": (lambda m, x: m.msort(x), [(5, 3)]),
    "topk": (lambda m, x: m.topk(x, 3).values, [(4, 7)]),
    "topk_smallest": (lambda m, x: m.topk(x, 2, dim=0, largest=False).values, [(5, 3)]),
    "kthvalue": (lambda m, x: m.kthvalue(x, 3, 1).values, [(4, 7)]),
    "kthvalue_keepdim": (lambda m, x: m.kthvalue(x, 2, 0, keepdim=True).values, [(5, 3)]),
    "cumprod": (lambda m, x: m.cumprod(x, 1), [(3, 6)]),
    "remainder": (lambda m, a, b: m.remainder(a, b.abs() + 0.5), [(4, 5), (4, 5)]),
    "remainder_neg_divisor": (lambda m, a, b: m.remainder(a * 3, -(b.abs() + 0.5)), [(4, 5), (5,)]),
    "fmod": (lambda m, a, b: m.fmod(a * 3, b.abs() + 0.5), [(4, 5), (4, 5)]),
    "repeat_interleave": (lambda m, x: x.repeat_interleave(3, dim=1), [(3, 4)]),
    "repeat_interleave_flat": (lambda m, x: x.repeat_interleave(2), [(3, 4)]),
    "addmm": (lambda m, c, a, b: m.addmm(c, a, b, beta=0.5, alpha=2.0), [(3, 5), (3, 4), (4, 5)]),
    "addmm_broadcast": (lambda m, c, a, b: m.addmm(c, a, b), [(5,), (3, 4), (4, 5)]),
    "baddbmm": (
        lambda m, c, a, b: m.baddbmm(c, a, b, beta=-1.0, alpha=0.5),
        [(2, 3, 5), (2, 3, 4), (2, 4, 5)],
    ),
}


@pytest.mark.parametrize("name", list(DIFFERENTIABLE))
def test_forward_and_gradients_match_torch(name):
    fn, shapes = DIFFERENTIABLE[name]
    _check(lambda *xs: fn(dg, *xs), lambda *xs: fn(torch, *xs), _arrays(shapes, 0))


def test_cumprod_gradient_with_zeros_matches_torch():
    x = np.array(
        [[1.5, 0.0, 2.0, -0.7, 0.0], [0.0, 1.2, 3.0, 0.9, 1.1], [0.5, -1.0, 2.0, 1.1, 0.3]]
    )
    _check(lambda t: dg.cumprod(t, 1), lambda t: torch.cumprod(t, 1), [x])


def test_indices_and_discrete_results_match_torch():
    a = np.random.default_rng(3).integers(0, 5, (4, 6)).astype(np.float64)  # ties
    ours, theirs = dg.tensor(a), torch.tensor(a)
    assert (
        dg.sort(ours, dim=1, stable=True).indices.tolist()
        == torch.sort(theirs, dim=1, stable=True).indices.tolist()
    )
    assert (
        dg.argsort(ours, dim=0, stable=True).tolist()
        == torch.argsort(theirs, dim=0, stable=True).tolist()
    )
    u = [t.tolist() for t in dg.unique(ours, return_inverse=True, return_counts=True)]
    ut = [t.tolist() for t in torch.unique(theirs, return_inverse=True, return_counts=True)]
    assert u == ut
    assert dg.unique(ours, dim=0).tolist() == torch.unique(theirs, dim=0).tolist()
    counts = [2, 0, 1, 3]
    assert (
        dg.repeat_interleave(dg.tensor(counts)).tolist()
        == torch.repeat_interleave(torch.tensor(counts)).tolist()
    )
    ints = np.array([-7, 7, -8, 9])
    for f in ("remainder", "fmod"):
        assert (
            getattr(dg, f)(dg.tensor(ints), 3).tolist()
            == getattr(torch, f)(torch.tensor(ints), 3).tolist()
        )
        assert (
            getattr(dg, f)(dg.tensor(ints), -3).tolist()
            == getattr(torch, f)(torch.tensor(ints), -3).tolist()
        )
