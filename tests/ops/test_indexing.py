import numpy as np
import pytest

import distgrad as dg
from distgrad.ops import graph_xp
from tests.ops.harness import Bool, Fixed, Float, Int, OpCase, make_tests

S = (3, 4)
S3 = (2, 3, 4)


def _along(index, dim):
    """For each position p of ``index``: p with p[dim] replaced by index[p] (a reference,
    element by element)."""
    for p in np.ndindex(index.shape):
        q = list(p)
        q[dim] = index[p]
        yield p, tuple(q)


def _gather_ref(a, dim, index):
    out = np.empty(index.shape, a.dtype)
    for p, q in _along(index, dim):
        out[p] = a[q]
    return out


def _scatter_ref(a, dim, index, src, add=False):
    out = a.copy()
    for p, q in _along(index, dim):
        v = src[p] if np.ndim(src) else src
        out[q] = out[q] + v if add else v
    return out


def _setitem(key):
    """``y = a * 1; y[key] = v``: gradients reach ``a`` (zero where written) and ``v``."""

    def fn(a, v):
        y = a * 1
        y[key] = v
        return y

    return fn


def _setitem_ref(key):
    def ref(a, v):
        y = a.copy()
        y[key] = v
        return y

    return ref


_PERM_ROWS = np.array([[2, 0, 1, 1], [0, 2, 2, 0]])  # distinct rows within each column
_IDX = np.array([0, 2, 2, 1])  # repeats: gradients must accumulate

CASES = [
    # basic indexing (views)
    OpCase("getitem_int", lambda a: a[1], lambda a: a[1], (Float(S),)),
    OpCase("getitem_negative_int", lambda a: a[-1, 2], lambda a: a[-1, 2], (Float(S),)),
    OpCase("getitem_slices", lambda a: a[::2, 1:], lambda a: a[::2, 1:], (Float(S),)),
    OpCase("getitem_reverse_step", lambda a: a[1:, ::-2], lambda a: a[1:, ::-2], (Float(S),)),
    OpCase(
        "getitem_none_ellipsis", lambda a: a[None, ..., 1], lambda a: a[None, ..., 1], (Float(S3),)
    ),
    OpCase(
        "getitem_ellipsis_middle",
        lambda a: a[0, ..., None, 2:],
        lambda a: a[0, ..., None, 2:],
        (Float(S3),),
    ),
    OpCase("getitem_0d_tensor_int", lambda a, i: a[i], lambda a, i: a[i], (Float(S), Fixed(2))),
    # advanced indexing (copies)
    OpCase(
        "getitem_list_repeats", lambda a: a[[0, 2, 2, -1]], lambda a: a[[0, 2, 2, -1]], (Float(S),)
    ),
    OpCase("getitem_int_tensor", lambda a, i: a[i], lambda a, i: a[i], (Float(S), Int((2, 5), 3))),
    OpCase(
        "getitem_int_tensor_and_slice",
        lambda a, i: a[1:, i],
        lambda a, i: a[1:, i],
        (Float(S3), Int((5,), 3)),
    ),
    OpCase(
        "getitem_two_arrays",
        lambda a, i, j: a[i, :, j],
        lambda a, i, j: a[i, :, j],
        (Float(S3), Int((3, 1), 2), Int((4,), 4)),
    ),
    OpCase("getitem_bool_mask", lambda a, m: a[m], lambda a, m: a[m], (Float(S), Bool(S))),
    OpCase(
        "getitem_bool_rows",
        lambda a, m: a[:, m],
        lambda a, m: a[:, m],
        (Float(S3), Fixed(np.array([True, False, True]))),
    ),
    OpCase(
        "getitem_int32_index", lambda a, i: a[i.int()], lambda a, i: a[i], (Float(S), Int((6,), 3))
    ),
    # __setitem__ (in place, gradients to the old tensor and to the value)
    OpCase("setitem_row", _setitem(1), _setitem_ref(1), (Float(S), Float((4,)))),
    OpCase(
        "setitem_broadcast_value",
        _setitem((slice(None), slice(1, 3))),
        _setitem_ref((slice(None), slice(1, 3))),
        (Float(S), Float((1, 2))),
    ),
    OpCase(
        "setitem_scalar_tensor",
        _setitem((Ellipsis, 2)),
        _setitem_ref((Ellipsis, 2)),
        (Float(S3), Float(())),
    ),
    OpCase(
        "setitem_int_index", _setitem(([0, 2],)), _setitem_ref(([0, 2],)), (Float(S), Float((2, 4)))
    ),
    OpCase(
        "setitem_mask",
        lambda a, m, v: _setitem((slice(None), m))(a, v),
        lambda a, m, v: _setitem_ref((slice(None), m))(a, v),
        (Float(S), Bool((4,)), Float(())),
    ),
    OpCase(
        "setitem_number",
        lambda a: _setitem((0, 1))(a, 2.5),
        lambda a: _setitem_ref((0, 1))(a, 2.5),
        (Float(S),),
    ),
    # gather / scatter
    OpCase(
        "gather_dim0",
        lambda a, i: dg.gather(a, 0, i),
        lambda a, i: _gather_ref(a, 0, i),
        (Float(S), Int((5, 3), 3)),
    ),
    OpCase(
        "gather_dim1",
        lambda a, i: a.gather(1, i),
        lambda a, i: _gather_ref(a, 1, i),
        (Float(S), Int((2, 6), 4)),
    ),
    OpCase(
        "gather_3d_last",
        lambda a, i: a.gather(-1, i),
        lambda a, i: _gather_ref(a, 2, i),
        (Float(S3), Int((2, 3, 2), 4)),
    ),
    OpCase(
        "scatter_src",
        lambda a, i, s: dg.scatter(a, 0, i, s),
        lambda a, i, s: _scatter_ref(a, 0, i, s),
        (Float(S), Fixed(_PERM_ROWS), Float((3, 5))),
    ),
    OpCase(
        "scatter_value",
        lambda a, i: a.scatter(1, i, 1.5),
        lambda a, i: _scatter_ref(a, 1, i, 1.5),
        (Float(S), Int((3, 2), 4)),
    ),
    OpCase(
        "scatter_add",
        lambda a, i, s: dg.scatter_add(a, 1, i, s),
        lambda a, i, s: _scatter_ref(a, 1, i, s, add=True),
        (Float(S), Int((3, 6), 4), Float((3, 6))),
    ),
    OpCase(
        "scatter_add_dim0_partial",
        lambda a, i, s: a.scatter_add(0, i, s),
        lambda a, i, s: _scatter_ref(a, 0, i, s, add=True),
        (Float(S), Int((4, 2), 3), Float((5, 3))),
    ),
    OpCase(
        "take_along_dim",
        lambda a, i: dg.take_along_dim(a, i, 1),
        lambda a, i: np.take_along_axis(a, i, 1),
        (Float(S), Int((3, 5), 4)),
    ),
    OpCase(
        "take_along_dim_broadcast",
        lambda a, i: a.take_along_dim(i, dim=2),
        lambda a, i: np.take_along_axis(
            np.broadcast_to(a, (2, 3, 4)), np.broadcast_to(i, (2, 3, 5)), 2
        ),
        (Float((1, 3, 4)), Int((2, 1, 5), 4)),
    ),
    OpCase(
        "take_along_dim_flat",
        lambda a, i: dg.take_along_dim(a, i),
        lambda a, i: a.ravel()[i],
        (Float(S), Int((7,), 12)),
    ),
    # index_select / index_add / index_put / take
    OpCase(
        "index_select",
        lambda a, i: dg.index_select(a, 0, i),
        lambda a, i: a[i],
        (Float(S), Fixed(_IDX)),
    ),
    OpCase(
        "index_select_dim1",
        lambda a, i: a.index_select(-1, i),
        lambda a, i: a[..., i],
        (Float(S3), Fixed(_IDX)),
    ),
    OpCase(
        "index_add",
        lambda a, i, s: dg.index_add(a, 1, i, s),
        lambda a, i, s: _index_add_ref(a, 1, i, s),
        (Float(S), Fixed(_IDX), Float((3, 4))),
    ),
    OpCase(
        "index_add_alpha",
        lambda a, i, s: a.index_add(0, i, s, alpha=-2.0),
        lambda a, i, s: _index_add_ref(a, 0, i, -2.0 * s),
        (Float(S), Fixed(_IDX), Float((4, 4))),
    ),
    OpCase(
        "index_put",
        lambda a, i, v: dg.index_put(a, (i,), v),
        lambda a, i, v: _setitem_ref((i,))(a, v),
        (Float(S), Fixed([2, 0]), Float((4,))),
    ),
    OpCase(
        "index_put_accumulate",
        lambda a, i, j, v: a.index_put((i, j), v, accumulate=True),
        lambda a, i, j, v: _index_put_add_ref(a, (i, j), v),
        (Float(S), Int((6,), 3), Int((6,), 4), Float((6,))),
    ),
    OpCase(
        "take",
        lambda a, i: dg.take(a, i),
        lambda a, i: a.ravel()[i],
        (Float(S), Int((2, 3), 12, low=-12)),
    ),
    # masks
    OpCase(
        "masked_fill",
        lambda a, m: a.masked_fill(m, -1.5),
        lambda a, m: np.where(m, -1.5, a),
        (Float(S), Bool(S)),
    ),
    OpCase(
        "masked_fill_broadcast_tensor_value",
        lambda a, m, v: dg.masked_fill(a, m, v),
        lambda a, m, v: np.where(m, v, a),
        (Float(S), Bool((4,)), Float(())),
    ),
    OpCase(
        "masked_select", lambda a, m: dg.masked_select(a, m), lambda a, m: a[m], (Float(S), Bool(S))
    ),
    OpCase(
        "masked_select_broadcast",
        lambda a, m: a.masked_select(m),
        lambda a, m: np.broadcast_to(a, (2, 3, 4))[np.broadcast_to(m, (2, 3, 4))],
        (Float((3, 4)), Bool((2, 1, 4))),
    ),
    OpCase(
        "nonzero",
        lambda a: dg.nonzero(a),
        np.argwhere,
        (Fixed([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]]),),
        grad=False,
    ),
    OpCase(
        "nonzero_as_tuple",
        lambda a: a.nonzero(as_tuple=True),
        np.nonzero,
        (Fixed([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]]),),
        grad=False,
    ),
]


def _index_add_ref(a, dim, index, src):
    out = np.moveaxis(a.copy(), dim, 0)
    s = np.moveaxis(src, dim, 0)
    for k, i in enumerate(index):
        out[i] += s[k]
    return np.moveaxis(out, 0, dim)


def _index_put_add_ref(a, key, v):
    out = a.copy()
    for k, pos in enumerate(zip(*key)):
        out[pos] += v[k]
    return out


globals().update(make_tests(CASES))


def _x(*shape, grad=True):
    rng = np.random.default_rng(1)
    return dg.tensor(rng.standard_normal(shape), requires_grad=grad)


# ---- semantics ----------------------------------------------------------------------------
def test_basic_indexing_returns_views_and_advanced_copies():
    x = dg.zeros(3, 4)
    x[1][2] = 5.0  # through a view
    x[0, 1:3] = dg.tensor([1.0, 2.0])
    x[[2]] += 9.0  # x[[2]] is a copy: x.__setitem__ writes the sum back
    want = np.zeros((3, 4))
    want[1, 2], want[0, 1:3], want[2] = 5, [1, 2], 9
    np.testing.assert_array_equal(x.numpy(), want)
    assert x[1, 2]._version is x._version and x[1, 2].shape == ()
    assert x[[1]]._version is not x._version


def test_setitem_gradients():
    a = _x(3, 4)
    v = _x(4)
    y = a * 2
    y[1] = v
    (y * dg.arange(12.0, dtype=dg.float64).reshape(3, 4)).sum().backward()
    g = 2 * np.arange(12.0).reshape(3, 4)
    g[1] = 0
    np.testing.assert_allclose(a.grad.numpy(), g)
    np.testing.assert_allclose(v.grad.numpy(), np.arange(4.0, 8.0))


def test_setitem_casts_the_value():
    x = dg.zeros(3, dtype=dg.float32)
    x[0] = dg.tensor(1.5, dtype=dg.float64)
    x[1] = 2
    x[2:] = np.array([3.0])
    assert x.dtype == dg.float32
    np.testing.assert_array_equal(x.numpy(), [1.5, 2, 3])
    i = dg.zeros(2, dtype=dg.int64)
    i[0] = 7
    np.testing.assert_array_equal(i.numpy(), [7, 0])


def test_setitem_on_leaf_requiring_grad():
    w = _x(3)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w[0] = 1.0
    with dg.no_grad():
        w[0] = 1.0
    assert w[0].item() == 1.0 and w._version_value == 1


def test_setitem_bumps_version_of_saved_tensor():
    y = _x(3).exp()
    y[0] = 0.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_scatter_index_and_mask_ops():
    a = _x(3, 4)
    y = a * 1
    idx = dg.tensor([[0, 1, 1, 0]])
    y.scatter_add_(0, idx, dg.ones(1, 4, dtype=dg.float64))
    y.index_add_(1, dg.tensor([3, 3]), dg.ones(3, 2, dtype=dg.float64), alpha=0.5)
    y.masked_fill_(dg.tensor([True, False, False]).unsqueeze(1), 0.0)
    y.scatter_(1, dg.tensor([[2], [2], [2]]), 4.0)
    y.index_put_((dg.tensor([2]), dg.tensor([0])), dg.tensor(-1.0, dtype=dg.float64))
    want = a.detach().numpy().copy()
    want[[0, 1, 1, 0], [0, 1, 2, 3]] += 1
    want[:, 3] += 1.0
    want[0] = 0
    want[:, 2] = 4
    want[2, 0] = -1
    np.testing.assert_allclose(y.detach().numpy(), want)
    y.sum().backward()
    g = np.ones((3, 4))
    g[0], g[:, 2], g[2, 0] = 0, 0, 0
    np.testing.assert_allclose(a.grad.numpy(), g)


def test_gather_backward_accumulates_repeats():
    x = _x(2, 3)
    x.gather(1, dg.tensor([[0, 0, 2, 0], [1, 1, 1, 1]])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[3, 0, 1], [0, 4, 0]])


def test_masked_fill_value_gradient():
    v = dg.tensor(2.0, dtype=dg.float64, requires_grad=True)
    x = dg.zeros(3, 4, dtype=dg.float64)
    x.masked_fill(dg.tensor([True, False, True, True]), v).sum().backward()
    assert v.grad.item() == 9.0


def test_iteration_yields_rows():
    x = dg.arange(6.0).reshape(3, 2)
    rows = list(x)
    assert len(rows) == 3 and all(r.shape == (2,) for r in rows)
    np.testing.assert_array_equal(rows[2].numpy(), [4, 5])
    with pytest.raises(TypeError, match="0-d tensor"):
        iter(dg.tensor(1.0))


def test_nonzero_of_0d_and_argwhere():
    assert dg.nonzero(dg.tensor(3.0)).shape == (1, 0)
    (i,) = dg.tensor(3.0).nonzero(as_tuple=True)
    np.testing.assert_array_equal(i.numpy(), [0])
    assert dg.argwhere(dg.tensor([0, 1, 1])).dtype == dg.int64


def test_index_with_cpu_lists_and_numpy_arrays():
    x = dg.arange(10.0)
    np.testing.assert_array_equal(x[np.array([1, 3])].numpy(), [1, 3])
    np.testing.assert_array_equal(x[[]].numpy(), np.zeros(0))
    np.testing.assert_array_equal(x[:3][dg.tensor([1, 0, 1], dtype=dg.uint8)].numpy(), [0, 2])


# ---- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fn, exc, match",
    [
        (
            lambda x: x[dg.tensor([0.0, 1.0])],
            IndexError,
            "tensors used as indices must be long, int, byte or bool tensors",
        ),
        (lambda x: x[dg.tensor([0, 1], dtype=dg.int16)], IndexError, "must be long, int"),
        (lambda x: x[[0, 5]], IndexError, r"index 5 is out of bounds for axis 0 with size 3"),
        (lambda x: x[1, 4], IndexError, r"index 4 is out of bounds for axis 1 with size 4"),
        (lambda x: x[0, 0, 0], IndexError, "too many indices"),
        (
            lambda x: x.gather(1, dg.tensor([[0, 4]])),
            IndexError,
            r"gather: index 4 is out of bounds for dimension 1 with size 4",
        ),
        (
            lambda x: x.gather(0, dg.tensor([[-1]])),
            IndexError,
            r"index -1 is out of bounds for dimension 0 with size 3",
        ),
        (lambda x: x.gather(0, dg.tensor([[0.0]])), IndexError, "must be long, int"),
        (lambda x: x.gather(0, dg.tensor([0])), RuntimeError, "same number of dimensions"),
        (
            lambda x: x.gather(0, dg.zeros(2, 5, dtype=dg.int64)),
            RuntimeError,
            "Size does not match at dimension 1",
        ),
        (
            lambda x: x.scatter(0, dg.zeros(2, 2, dtype=dg.int64), dg.zeros(1, 2)),
            RuntimeError,
            "smaller than src",
        ),
        (
            lambda x: x.scatter(
                0, dg.zeros(1, 1, dtype=dg.int64), dg.zeros(1, 1, dtype=dg.float64)
            ),
            RuntimeError,
            "Expected self.dtype to be equal to src.dtype",
        ),
        (
            lambda x: x.index_select(0, dg.tensor([3])),
            IndexError,
            "index 3 is out of bounds for dimension 0 with size 3",
        ),
        (lambda x: x.index_select(0, dg.tensor([[0]])), IndexError, "supposed to be a vector"),
        (lambda x: x.index_add(0, dg.tensor([0]), dg.zeros(2, 4)), RuntimeError, "source shape"),
        (lambda x: x.masked_fill(dg.zeros(3, 4), 1.0), RuntimeError, "only supports boolean masks"),
        (lambda x: x.masked_fill(x > 0, dg.zeros(2)), RuntimeError, "0-dimensional value tensor"),
        (lambda x: x.take(dg.tensor([12])), IndexError, "out of bounds"),
        (lambda x: x.take_along_dim(dg.tensor([0]), 0), RuntimeError, "same number of dimensions"),
        (
            lambda x: x.__setitem__(0, dg.zeros(3)),
            RuntimeError,
            r"shape mismatch: value tensor of shape \[3\] cannot be broadcast to indexing result of "
            r"shape \[4\]",
        ),
    ],
)
def test_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn(dg.zeros(3, 4))


# ---- the differentiable namespace matches numpy -------------------------------------------
def test_graph_namespace_take_matches_numpy():
    a = np.random.default_rng(0).standard_normal((3, 4))
    i = np.array([[0, -1], [2, 1]])
    for axis in (None, 0, 1):
        np.testing.assert_array_equal(
            graph_xp.take(dg.tensor(a), i, axis).numpy(), np.take(a, i, axis)
        )
    j = np.array([[0, 3], [1, 1], [2, 0]])
    np.testing.assert_array_equal(
        graph_xp.take_along_axis(dg.tensor(a), j, 1).numpy(), np.take_along_axis(a, j, 1)
    )
