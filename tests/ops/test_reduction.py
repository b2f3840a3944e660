import math

import numpy as np
import pytest

import distgrad as dg
from tests.ops.harness import Bool, Fixed, Float, OpCase, make_tests

S = (3, 4)
S3 = (2, 3, 4)


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _pnorm(a, p, axis=None):
    return (np.abs(a) ** p).sum(axis=axis) ** (1 / p)


ONE_ZERO_PER_ROW = Fixed([[1.5, 0.0, 2.0, -0.7], [0.0, 1.2, 3.0, 0.9], [0.5, -1.0, 2.0, 1.1]])
TWO_ZEROS = Fixed([[1.5, 0.0, 2.0, 0.0], [0.4, 1.2, 3.0, 0.9]])
TIED_PAIR = Fixed([[1.0, 3.0, 0.5], [3.0, -1.0, 2.0]])  # the maximum 3.0 appears twice

CASES = [
    OpCase("sum_all", dg.sum, np.sum, (Float(S),)),
    OpCase("sum_dim", lambda a: a.sum(1), lambda a: a.sum(1), (Float(S),)),
    OpCase(
        "sum_neg_dim_keepdim",
        lambda a: a.sum(-1, keepdim=True),
        lambda a: a.sum(-1, keepdims=True),
        (Float(S3),),
    ),
    OpCase("sum_tuple", lambda a: dg.sum(a, (0, 2)), lambda a: a.sum((0, 2)), (Float(S3),)),
    OpCase("sum_0d", dg.sum, np.sum, (Float(()),)),
    OpCase("sum_0d_dim", lambda a: a.sum(0), np.sum, (Float(()),)),
    OpCase("mean_all", dg.mean, np.mean, (Float(S),)),
    OpCase(
        "mean_tuple_keepdim",
        lambda a: a.mean((0, -1), keepdim=True),
        lambda a: a.mean((0, 2), keepdims=True),
        (Float(S3),),
    ),
    OpCase("prod_all", dg.prod, np.prod, (Float(S, 0.5, 1.5),)),
    OpCase("prod_dim", lambda a: a.prod(0), lambda a: a.prod(0), (Float(S3),)),
    OpCase("prod_one_zero", lambda a: a.prod(1), lambda a: a.prod(1), (ONE_ZERO_PER_ROW,)),
    # across two zeros of one slice only the first derivative is exact
    OpCase("prod_two_zeros", lambda a: a.prod(1), lambda a: a.prod(1), (TWO_ZEROS,), double=False),
    OpCase("max_all", dg.max, np.max, (Float(S),)),
    OpCase(
        "max_dim", lambda a: tuple(dg.max(a, 1)), lambda a: (a.max(1), a.argmax(1)), (Float(S3),)
    ),
    OpCase(
        "max_dim_keepdim",
        lambda a: tuple(a.max(0, keepdim=True)),
        lambda a: (a.max(0, keepdims=True), a.argmax(0)[None]),
        (Float(S),),
    ),
    OpCase("min_dim", lambda a: tuple(a.min(-1)), lambda a: (a.min(-1), a.argmin(-1)), (Float(S),)),
    OpCase("min_all", lambda a: a.min(), np.min, (Float(S3),)),
    OpCase("max_0d_dim", lambda a: tuple(dg.max(a, 0)), lambda a: (a, np.int64(0)), (Float(()),)),
    OpCase("max_binary", lambda a, b: dg.max(a, b), np.maximum, (Float(S), Float((4,)))),
    OpCase("max_tied_pair", dg.max, np.max, (TIED_PAIR,), double=False),
    OpCase("amax_tuple", lambda a: dg.amax(a, (0, 2)), lambda a: a.max((0, 2)), (Float(S3),)),
    OpCase("amax_tied_pair", lambda a: a.amax(1), lambda a: a.max(1), (TIED_PAIR,), double=False),
    OpCase(
        "amin_keepdim",
        lambda a: a.amin(-1, keepdim=True),
        lambda a: a.min(-1, keepdims=True),
        (Float(S3),),
    ),
    OpCase("argmax", lambda a: a.argmax(), lambda a: np.int64(a.argmax()), (Float(S),), grad=False),
    OpCase(
        "argmax_dim_keepdim",
        lambda a: dg.argmax(a, 1, keepdim=True),
        lambda a: a.argmax(1)[:, None],
        (Float(S),),
        grad=False,
    ),
    OpCase("argmin_dim", lambda a: a.argmin(0), lambda a: a.argmin(0), (Float(S3),), grad=False),
    OpCase("var_all", dg.var, lambda a: a.var(ddof=1), (Float(S),)),
    OpCase("var_dim_biased", lambda a: a.var(1, unbiased=False), lambda a: a.var(1), (Float(S3),)),
    OpCase(
        "var_correction_keepdim",
        lambda a: dg.var(a, (0, 2), correction=2, keepdim=True),
        lambda a: a.var((0, 2), ddof=2, keepdims=True),
        (Float(S3),),
    ),
    OpCase("std_all", dg.std, lambda a: a.std(ddof=1), (Float(S),)),
    OpCase("std_dim", lambda a: a.std(0), lambda a: a.std(0, ddof=1), (Float(S),)),
    OpCase("norm_default", dg.norm, np.linalg.norm, (Float(S3),)),
    OpCase(
        "norm_fro_dims",
        lambda a: a.norm("fro", (1, 2)),
        lambda a: np.sqrt((a * a).sum((1, 2))),
        (Float(S3),),
    ),
    OpCase(
        "norm_2_keepdim",
        lambda a: a.norm(2, -1, keepdim=True),
        lambda a: np.linalg.norm(a, axis=-1, keepdims=True),
        (Float(S),),
    ),
    OpCase(
        "norm_1", lambda a: a.norm(1, 0), lambda a: np.abs(a).sum(0), (Float(S, away_from=0.0),)
    ),
    OpCase(
        "norm_inf",
        lambda a: dg.norm(a, math.inf, 1),
        lambda a: np.abs(a).max(1),
        (Float(S, away_from=0.0),),
    ),
    OpCase(
        "norm_neg_inf",
        lambda a: dg.norm(a, -math.inf),
        lambda a: np.abs(a).min(),
        (Float(S, away_from=0.0),),
    ),
    OpCase(
        "norm_3", lambda a: dg.norm(a, 3, 1), lambda a: _pnorm(a, 3, 1), (Float(S, away_from=0.0),)
    ),
    OpCase(
        "norm_0",
        lambda a: dg.norm(a, 0),
        lambda a: np.count_nonzero(a) * 1.0,
        (Fixed([[0.0, 1.5], [2.0, 0.0], [0.0, 0.0]]),),
        grad=False,
    ),
    OpCase(
        "logsumexp_dim",
        lambda a: dg.logsumexp(a, 1),
        lambda a: np.log(np.exp(a).sum(1)),
        (Float(S3),),
    ),
    OpCase(
        "logsumexp_tuple_keepdim",
        lambda a: a.logsumexp((0, 2), keepdim=True),
        lambda a: np.log(np.exp(a).sum((0, 2), keepdims=True)),
        (Float(S3),),
    ),
    OpCase("logsumexp_0d", lambda a: a.logsumexp(0), lambda a: a, (Float(()),)),
    OpCase("softmax_last", lambda a: dg.softmax(a, -1), lambda a: _softmax(a, -1), (Float(S3),)),
    OpCase("softmax_dim0", lambda a: a.softmax(0), lambda a: _softmax(a, 0), (Float(S),)),
    OpCase(
        "log_softmax",
        lambda a: dg.log_softmax(a, 1),
        lambda a: np.log(_softmax(a, 1)),
        (Float(S3),),
    ),
    OpCase("softmax_0d", lambda a: a.softmax(0), lambda a: np.ones_like(a), (Float(()),)),
    OpCase("cumsum", lambda a: dg.cumsum(a, 1), lambda a: a.cumsum(1), (Float(S3),)),
    OpCase("cumsum_neg_dim", lambda a: a.cumsum(-1), lambda a: a.cumsum(-1), (Float(S),)),
    OpCase("cumsum_0d", lambda a: a.cumsum(0), lambda a: a, (Float(()),)),
    OpCase("all_dim", lambda a: a.all(1), lambda a: a.all(1), (Bool(S3, 0.8),), grad=False),
    OpCase("any_all", dg.any, np.any, (Bool(S, 0.1),), grad=False),
]

globals().update(make_tests(CASES))


# ---- dtypes -------------------------------------------------------------------------------
def test_sum_dtypes():
    assert dg.tensor([[1, 2], [3, 4]], dtype=dg.int32).sum().dtype == dg.int64
    assert dg.tensor([True, True, False]).sum().item() == 2
    x = dg.ones(2, 3, requires_grad=True)
    y = x.sum(1, dtype=dg.float64)
    assert y.dtype == dg.float64
    y.sum().backward()
    assert x.grad.dtype == dg.float32
    assert dg.cumsum(dg.tensor([1, 2, 3], dtype=dg.int32), 0).dtype == dg.int64


def test_mean_of_integers_raises():
    with pytest.raises(RuntimeError, match="mean.*floating point.*int64"):
        dg.tensor([1, 2, 3]).mean()
    assert dg.tensor([1, 2, 3]).mean(dtype=dg.float64).item() == 2.0


# ---- max / min ------------------------------------------------------------------------------
def test_max_dim_returns_values_and_indices():
    x = dg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    result = x.max(1)
    values, indices = result
    assert isinstance(result, tuple) and result.values is values and result.indices is indices
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert indices.dtype == dg.int64
    assert "max(values=" in repr(result)
    low = dg.min(x, 0, keepdim=True)
    assert low.values.tolist() == [[1.0, 0.0, 2.0]] and low.indices.tolist() == [[0, 1, 0]]


def test_max_along_dim_gradient_goes_to_returned_index_only():
    x = dg.tensor([[2.0, 2.0, 1.0], [0.0, 3.0, 3.0]], requires_grad=True)
    values, indices = x.max(1)
    values.sum().backward()
    expected = np.zeros((2, 3))
    expected[np.arange(2), indices.numpy()] = 1
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_full_max_and_amax_share_gradient_among_ties():
    x = dg.tensor([[1.0, 4.0], [4.0, 4.0]], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 1 / 3], [1 / 3, 1 / 3]])
    y = dg.tensor([[1.0, 4.0, 4.0], [4.0, 2.0, 0.0]], requires_grad=True)
    y.amin(0).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [[1, 0, 0], [0, 1, 1]])


def test_empty_reduction_raises():
    with pytest.raises(IndexError, match=r"max\(\).*dim 1.*\[2, 0\]"):
        dg.zeros(2, 0).max(1)
    with pytest.raises(RuntimeError, match="numel"):
        dg.zeros(0).max()


# ---- prod, norm, logsumexp, softmax -------------------------------------------------------
@pytest.mark.parametrize("row", [[2.0, 0.0, 3.0, -1.5], [0.0, 0.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
def test_prod_gradient_with_zeros(row):
    x = dg.tensor(row, dtype=dg.float64, requires_grad=True)
    x.prod().backward()
    others = [np.prod(np.delete(row, i)) for i in range(len(row))]
    np.testing.assert_allclose(x.grad.numpy(), others)


def test_norm_gradient_is_zero_at_zero():
    x = dg.zeros(2, 3, requires_grad=True)
    x.norm(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3)))


def test_norm_rejects_nuclear():
    with pytest.raises(ValueError, match="nuc"):
        dg.ones(2, 2).norm("nuc")


def test_logsumexp_and_softmax_are_stable():
    big = dg.tensor([[1000.0, 1000.0], [-1000.0, -1e30]], requires_grad=True)
    lse = dg.logsumexp(big, 1)
    np.testing.assert_allclose(lse.detach().numpy(), [1000 + np.log(2), -1000], rtol=1e-6)
    lse.sum().backward()
    np.testing.assert_allclose(big.grad.numpy(), [[0.5, 0.5], [1, 0]], rtol=1e-4)
    assert dg.logsumexp(dg.full((3,), -math.inf), 0).item() == -math.inf
    s = dg.softmax(big.detach(), 1)
    np.testing.assert_allclose(s.numpy(), [[0.5, 0.5], [1, 0]])
    ls = dg.log_softmax(big.detach(), 1)
    assert np.isfinite(ls.numpy()[0]).all()
    assert s.dtype == dg.float32


def test_softmax_dtype_argument():
    x = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x.softmax(0, dtype=dg.float64)
    assert y.dtype == dg.float64
    (y * dg.tensor([1.0, 0.0, 0.0], dtype=dg.float64)).sum().backward()
    assert x.grad.dtype == dg.float32
    assert dg.log_softmax(dg.tensor([1, 2]), 0, dtype=dg.float32).dtype == dg.float32
    with pytest.raises(RuntimeError, match="softmax.*floating"):
        dg.softmax(dg.tensor([1, 2]), 0)


# ---- var / std, argmax, all / any, dims -----------------------------------------------------
def test_var_std_argument_forms():
    a = np.random.default_rng(0).standard_normal((3, 5))
    x = dg.tensor(a)
    np.testing.assert_allclose(x.var(False).item(), a.var())
    np.testing.assert_allclose(x.var(1, True).numpy(), a.var(1, ddof=1))
    np.testing.assert_allclose(dg.std(x, 0, correction=0).numpy(), a.std(0))


def test_argmax_without_dim_flattens():
    x = dg.tensor([[1.0, 9.0], [3.0, 4.0]])
    assert x.argmax().item() == 1 and x.argmin().item() == 0
    assert x.argmax(keepdim=True).shape == (1, 1)
    assert dg.argmax(x, 0).tolist() == [1, 0]


def test_all_any():
    x = dg.tensor([[1, 0], [2, 3]])
    assert dg.all(x).item() is False and dg.any(x).item() is True
    assert x.all(1).tolist() == [False, True] and x.any(0, keepdim=True).tolist() == [[True, True]]


@pytest.mark.parametrize(
    "op", ["sum", "mean", "amax", "logsumexp", "softmax", "cumsum", "var", "argmax", "all"]
)
def test_dim_out_of_range(op):
    with pytest.raises(
        IndexError,
        match=r"Dimension out of range \(expected to be in range of "
        r"\[-2, 1\], but got 2\)",
    ):
        getattr(dg.ones(2, 3), op)(2)


def test_graph_xp_sum_matches_numpy_signature():
    from distgrad.ops import graph_xp

    x = dg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    out = graph_xp.sum(x, axis=(0,), keepdims=True)
    assert out.shape == (1, 3) and out.requires_grad
    np.testing.assert_array_equal(graph_xp.sum(x).numpy(force=True), 15.0)
    np.testing.assert_array_equal(graph_xp.mean(x, axis=1).numpy(force=True), [1.0, 4.0])
