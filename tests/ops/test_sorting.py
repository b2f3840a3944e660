"""Sorting and selection (ops/sorting.py) and the other ops issue 19 added to their families
(cumprod, remainder/fmod, repeat_interleave, addmm/baddbmm) in the op harness, plus their
edge cases and errors."""

import numpy as np
import pytest

import distgrad as dg
from tests.ops.harness import Fixed, Float, OpCase, make_tests

S = (3, 5)
S3 = (2, 3, 4)


def _np_sort(a, axis=-1, descending=False):
    idx = np.argsort(-a if descending else a, axis=axis, kind="stable")
    return np.take_along_axis(a, idx, axis)


def _np_topk(a, k, axis=-1, largest=True):
    s = _np_sort(a, axis, descending=largest)
    return np.take(s, np.arange(k), axis=axis)


WITH_ZEROS = Fixed([[1.5, 0.0, 2.0, -0.7], [0.0, 1.2, 0.0, 0.9], [0.5, -1.0, 2.0, 1.1]])

CASES = [
    OpCase("sort", lambda a: dg.sort(a).values, _np_sort, (Float(S),)),
    OpCase(
        "sort_dim0_desc",
        lambda a: a.sort(0, descending=True)[0],
        lambda a: _np_sort(a, 0, True),
        (Float(S3),),
    ),
    OpCase("msort", dg.msort, lambda a: np.sort(a, 0), (Float(S),)),
    OpCase("topk", lambda a: dg.topk(a, 2).values, lambda a: _np_topk(a, 2), (Float(S),)),
    OpCase(
        "topk_smallest_dim1",
        lambda a: a.topk(3, dim=1, largest=False)[0],
        lambda a: _np_topk(a, 3, 1, False),
        (Float(S3),),
    ),
    OpCase(
        "kthvalue",
        lambda a: dg.kthvalue(a, 2, 1).values,
        lambda a: np.sort(a, 1)[:, 1],
        (Float(S),),
    ),
    OpCase(
        "kthvalue_keepdim",
        lambda a: a.kthvalue(1, 0, keepdim=True)[0],
        lambda a: np.sort(a, 0)[:1],
        (Float(S3),),
    ),
    OpCase("cumprod", lambda a: dg.cumprod(a, 1), lambda a: np.cumprod(a, 1), (Float(S3),)),
    OpCase("cumprod_zeros", lambda a: a.cumprod(1), lambda a: np.cumprod(a, 1), (WITH_ZEROS,)),
    OpCase("cumprod_0d", lambda a: a.cumprod(0), lambda a: a, (Float(()),)),
    OpCase(
        "remainder",
        dg.remainder,
        np.remainder,
        (Float(S, away_from=0.0, gap=0.3), Float(S, 0.5, 2.0)),
    ),
    OpCase(
        "remainder_scalar",
        lambda a: a % 0.7,
        lambda a: np.remainder(a, 0.7),
        (Float(S),),
        double=False,  # piecewise: the float32 check of the kink is enough
    ),
    OpCase(
        "fmod",
        dg.fmod,
        np.fmod,
        (Float(S), Float(S, 0.6, 2.0)),
    ),
    OpCase(
        "repeat_interleave",
        lambda a: a.repeat_interleave(2, dim=1),
        lambda a: np.repeat(a, 2, axis=1),
        (Float(S),),
    ),
    OpCase(
        "repeat_interleave_counts",
        lambda a: dg.repeat_interleave(a, dg.tensor([1, 0, 3]), dim=0),
        lambda a: np.repeat(a, [1, 0, 3], axis=0),
        (Float(S),),
    ),
    OpCase(
        "repeat_interleave_flat",
        lambda a: a.repeat_interleave(3),
        lambda a: np.repeat(a.reshape(-1), 3),
        (Float((2, 2)),),
    ),
    OpCase(
        "addmm",
        lambda c, a, b: dg.addmm(c, a, b, beta=0.5, alpha=2.0),
        lambda c, a, b: 0.5 * c + 2.0 * a @ b,
        (Float((3, 5)), Float((3, 4)), Float((4, 5))),
    ),
    OpCase(
        "baddbmm",
        lambda c, a, b: dg.baddbmm(c, a, b, alpha=-1.5),
        lambda c, a, b: c - 1.5 * a @ b,
        (Float((1, 3, 5)), Float((2, 3, 4)), Float((2, 4, 5))),
    ),
]

globals().update(make_tests(CASES))


def test_sort_indices_are_stable_and_nan_is_largest():
    x = dg.tensor([2.0, float("nan"), 1.0, 2.0, -1.0])
    v, i = dg.sort(x)
    assert i.tolist() == [4, 2, 0, 3, 1] and np.isnan(v.tolist()[-1])
    v, i = dg.sort(x, descending=True)
    assert i.tolist() == [1, 0, 3, 2, 4]
    assert dg.argsort(dg.tensor([3, 1, 2])).tolist() == [1, 2, 0]


def test_topk_kthvalue_errors_name_k_and_size():
    x = dg.randn(3, 4)
    with pytest.raises(RuntimeError, match="k out of range"):
        x.topk(5)
    with pytest.raises(RuntimeError, match="out of range"):
        x.kthvalue(0)
    assert x.topk(0).values.shape == (3, 0)


def test_unique_sorted_inverse_counts_and_dim():
    x = dg.tensor([[3, 1], [3, 2], [3, 1]])
    values, inverse, counts = dg.unique(x, return_inverse=True, return_counts=True)
    assert values.tolist() == [1, 2, 3] and counts.tolist() == [2, 1, 3]
    assert inverse.tolist() == [[2, 0], [2, 1], [2, 0]]
    rows, inv = x.unique(dim=0, return_inverse=True)
    assert rows.tolist() == [[3, 1], [3, 2]] and inv.tolist() == [0, 1, 0]


def test_remainder_fmod_are_exact_and_follow_infinities():
    assert dg.remainder(dg.tensor([1e30], dtype=dg.float64), 37.0).item() == 25.0
    assert dg.fmod(dg.tensor([1e30]), 13.0).item() == float(np.fmod(np.float32(1e30), 13))
    assert dg.remainder(dg.tensor([5.0, -5.0]), float("inf")).tolist() == [5.0, float("inf")]
    assert dg.fmod(dg.tensor([5.0, -5.0]), float("inf")).tolist() == [5.0, -5.0]
    assert dg.remainder(dg.tensor([-7, 7]), 3).tolist() == [2, 1]
    assert dg.fmod(dg.tensor([-7, 7]), 3).tolist() == [-1, 1]


@pytest.mark.parametrize(
    "fn",
    [
        lambda: dg.tensor([1, 2]) // 0,
        lambda: dg.remainder(dg.tensor([1, 2]), 0),
        lambda: dg.fmod(dg.tensor([1, 2]), dg.tensor([1, 0])),
        lambda: dg.div(dg.tensor([4]), dg.tensor([0]), rounding_mode="trunc"),
    ],
)
def test_integer_division_by_zero_raises(fn):
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        fn()


def test_repeat_interleave_errors():
    with pytest.raises(RuntimeError, match="same size"):
        dg.ones(3).repeat_interleave(dg.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="negative"):
        dg.ones(2).repeat_interleave(-1)


def test_multinomial_draws_and_errors():
    dg.manual_seed(0)
    draws = dg.multinomial(dg.tensor([0.0, 1.0, 3.0]), 1000, replacement=True)
    counts = np.bincount(draws.numpy(), minlength=3)
    assert counts[0] == 0 and 0.65 < counts[2] / 1000 < 0.85 and draws.dtype == dg.int64
    rows = dg.multinomial(dg.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]]), 2)
    assert rows.shape == (2, 2) and all(len(set(r)) == 2 for r in rows.tolist())
    assert 0 not in rows[1].tolist()
    with pytest.raises(RuntimeError, match="without replacement"):
        dg.multinomial(dg.ones(2), 3)
    with pytest.raises(RuntimeError, match="inf"):
        dg.multinomial(dg.tensor([1.0, float("nan")]), 1)
    with pytest.raises(RuntimeError, match="sum of probabilities"):
        dg.multinomial(dg.zeros(3), 1)


def test_out_argument_of_mul_and_matmul():
    out = dg.empty(2, 2)
    assert dg.matmul(dg.ones(2, 3), dg.ones(3, 2), out=out) is out
    assert out.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    small = dg.zeros(1)
    dg.mul(dg.ones(3), 2.0, out=small)  # resized, as PyTorch
    assert small.tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        dg.mul(dg.ones(2, requires_grad=True), 2.0, out=dg.empty(2))
    with pytest.raises(RuntimeError, match="can't be cast"):
        dg.mul(dg.ones(2), 1.5, out=dg.zeros(2, dtype=dg.int64))
