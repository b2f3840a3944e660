import numpy as np
import pytest

import distgrad as dg
from distgrad.ops import graph_xp
from tests.ops.harness import Fixed, Float, OpCase, make_tests

S = (3, 4)
S3 = (2, 3, 4)


def _pad_ref(a, pad, mode="constant", value=0.0):
    """np.pad with PyTorch's (last dim first) pad tuple; negative widths crop."""
    widths = [(0, 0)] * a.ndim
    for i in range(len(pad) // 2):
        widths[a.ndim - 1 - i] = pad[2 * i : 2 * i + 2]
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}.get(mode)
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    out = np.pad(a, grow, constant_values=value) if np_mode is None else np.pad(a, grow, np_mode)
    crop = tuple(
        slice(max(-lo, 0), out.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(widths)
    )
    return out[crop]


CASES = [
    # reshape family
    OpCase("reshape", lambda a: a.reshape(4, 3), lambda a: a.reshape(4, 3), (Float(S),)),
    OpCase(
        "reshape_infer",
        lambda a: dg.reshape(a, shape=(2, -1, 3)),
        lambda a: a.reshape(2, 2, 3),
        (Float(S),),
    ),
    OpCase("reshape_0d", lambda a: a.reshape(1, 1), lambda a: a.reshape(1, 1), (Float(()),)),
    OpCase("reshape_to_0d", lambda a: a.reshape(()), lambda a: a.reshape(()), (Float((1, 1)),)),
    OpCase("view_split_dim", lambda a: a.view(3, -1, 2), lambda a: a.reshape(3, 2, 2), (Float(S),)),
    OpCase("flatten", lambda a: a.flatten(), np.ravel, (Float(S3),)),
    OpCase("flatten_range", lambda a: dg.flatten(a, 1), lambda a: a.reshape(2, 12), (Float(S3),)),
    OpCase("flatten_0d", dg.flatten, lambda a: a.reshape(1), (Float(()),)),
    OpCase("ravel", dg.ravel, np.ravel, (Float(S),)),
    OpCase(
        "unflatten",
        lambda a: a.unflatten(1, (2, -1)),
        lambda a: a.reshape(2, 2, 6, 4),
        (Float((2, 12, 4)),),
    ),
    OpCase("squeeze_all", lambda a: a.squeeze(), np.squeeze, (Float((3, 1, 4, 1)),)),
    OpCase(
        "squeeze_dim",
        lambda a: dg.squeeze(a, 1),
        lambda a: np.squeeze(a, 1),
        (Float((3, 1, 4, 1)),),
    ),
    OpCase(
        "squeeze_dims_tuple",
        lambda a: a.squeeze((1, -1, 0)),
        lambda a: a.reshape(3, 4),
        (Float((3, 1, 4, 1)),),
    ),
    OpCase("unsqueeze", lambda a: a.unsqueeze(1), lambda a: a[:, None], (Float(S),)),
    OpCase("unsqueeze_last", lambda a: dg.unsqueeze(a, -1), lambda a: a[..., None], (Float(S),)),
    OpCase("unsqueeze_0d", lambda a: a.unsqueeze(0), lambda a: a.reshape(1), (Float(()),)),
    OpCase(
        "view_as",
        lambda a, b: a.view_as(b),
        lambda a, b: a.reshape(b.shape),
        (Float((12,)), Float((2, 6), grad=False)),
    ),
    OpCase(
        "reshape_as",
        lambda a, b: a.reshape_as(b),
        lambda a, b: a.reshape(b.shape),
        (Float(S), Float((6, 2), grad=False)),
    ),
    # permutations
    OpCase("transpose", lambda a: a.transpose(0, 2), lambda a: np.swapaxes(a, 0, 2), (Float(S3),)),
    OpCase(
        "swapaxes", lambda a: dg.swapaxes(a, -1, 1), lambda a: np.swapaxes(a, 2, 1), (Float(S3),)
    ),
    OpCase("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), (Float(S3),)),
    OpCase(
        "permute_list",
        lambda a: dg.permute(a, dims=[1, -1, 0]),
        lambda a: a.transpose(1, 2, 0),
        (Float(S3),),
    ),
    OpCase("t", dg.t, np.transpose, (Float(S),)),
    OpCase("t_1d", lambda a: a.t(), lambda a: a, (Float((4,)),)),
    OpCase("T", lambda a: a.T, np.transpose, (Float(S3),)),
    OpCase("mT", lambda a: a.mT, lambda a: np.swapaxes(a, -1, -2), (Float(S3),)),
    OpCase("movedim", lambda a: a.movedim(0, -1), lambda a: np.moveaxis(a, 0, -1), (Float(S3),)),
    OpCase(
        "movedim_tuple",
        lambda a: dg.movedim(a, (0, 1), (2, 0)),
        lambda a: np.moveaxis(a, (0, 1), (2, 0)),
        (Float(S3),),
    ),
    # broadcasting views
    OpCase(
        "expand",
        lambda a: a.expand(2, 3, 4),
        lambda a: np.broadcast_to(a, (2, 3, 4)),
        (Float((3, 1)),),
    ),
    OpCase(
        "expand_keep",
        lambda a: a.expand(-1, 5),
        lambda a: np.broadcast_to(a, (3, 5)),
        (Float((3, 1)),),
    ),
    OpCase(
        "expand_0d", lambda a: a.expand(2, 3), lambda a: np.broadcast_to(a, (2, 3)), (Float(()),)
    ),
    OpCase(
        "broadcast_to",
        lambda a: dg.broadcast_to(a, (4, 3, 4)),
        lambda a: np.broadcast_to(a, (4, 3, 4)),
        (Float((1, 4)),),
    ),
    OpCase(
        "expand_as",
        lambda a, b: a.expand_as(b),
        lambda a, b: np.broadcast_to(a, b.shape),
        (Float((4,)), Float(S, grad=False)),
    ),
    OpCase(
        "broadcast_tensors",
        lambda a, b: dg.broadcast_tensors(a, b),
        lambda a, b: tuple(np.broadcast_arrays(a, b)),
        (Float((3, 1)), Float((2, 1, 4))),
    ),
    # repeat / tile
    OpCase(
        "repeat", lambda a: a.repeat(2, 1, 3), lambda a: np.tile(a, (2, 1, 3)), (Float((2, 3)),)
    ),
    OpCase(
        "repeat_same_ndim",
        lambda a: a.repeat((3, 2)),
        lambda a: np.tile(a, (3, 2)),
        (Float((2, 3)),),
    ),
    OpCase("repeat_0d", lambda a: a.repeat(2, 3), lambda a: np.tile(a, (2, 3)), (Float(()),)),
    OpCase("tile", lambda a: dg.tile(a, dims=(2,)), lambda a: np.tile(a, 2), (Float((2, 3)),)),
    # joining
    OpCase(
        "cat",
        lambda a, b: dg.cat([a, b]),
        lambda a, b: np.concatenate([a, b]),
        (Float((2, 3)), Float((4, 3))),
    ),
    OpCase(
        "cat_dim1",
        lambda a, b, c: dg.cat((a, b, c), dim=-1),
        lambda a, b, c: np.concatenate([a, b, c], axis=-1),
        (Float((2, 3)), Float((2, 1)), Float((2, 2))),
    ),
    OpCase(
        "cat_skip_empty_1d",
        lambda a, e, b: dg.cat([a, e, b], 1),
        lambda a, e, b: np.concatenate([a, b], 1),
        (Float((2, 3)), Fixed(np.zeros(0), grad=False), Float((2, 2))),
    ),
    OpCase(
        "cat_zero_size",
        lambda a, b: dg.concat([a, b]),
        lambda a, b: np.concatenate([a, b]),
        (Float((0, 3)), Float((2, 3))),
    ),
    OpCase(
        "stack", lambda a, b: dg.stack([a, b]), lambda a, b: np.stack([a, b]), (Float(S), Float(S))
    ),
    OpCase(
        "stack_last",
        lambda a, b, c: dg.stack([a, b, c], -1),
        lambda a, b, c: np.stack([a, b, c], -1),
        (Float(S), Float(S), Float(S)),
    ),
    OpCase(
        "stack_0d",
        lambda a, b: dg.stack([a, b]),
        lambda a, b: np.stack([a, b]),
        (Float(()), Float(())),
    ),
    OpCase(
        "hstack",
        lambda a, b: dg.hstack([a, b]),
        lambda a, b: np.hstack([a, b]),
        (Float((3, 2)), Float((3, 1))),
    ),
    OpCase(
        "vstack",
        lambda a, b: dg.vstack([a, b]),
        lambda a, b: np.vstack([a, b]),
        (Float((4,)), Float((2, 4))),
    ),
    # splitting
    OpCase(
        "split_size",
        lambda a: a.split(2, 1),
        lambda a: tuple(np.split(a, [2, 4], 1)),
        (Float((3, 5)),),
    ),
    OpCase(
        "split_sections",
        lambda a: dg.split(a, [1, 3, 1], dim=-1),
        lambda a: tuple(np.split(a, [1, 4], -1)),
        (Float((3, 5)),),
    ),
    OpCase("chunk", lambda a: a.chunk(2), lambda a: tuple(np.split(a, [3])), (Float((5, 3)),)),
    OpCase("unbind", lambda a: a.unbind(1), lambda a: tuple(np.moveaxis(a, 1, 0)), (Float(S),)),
    OpCase("unbind_1d", dg.unbind, lambda a: tuple(a), (Float((3,)),)),
    OpCase("narrow", lambda a: a.narrow(1, 1, 2), lambda a: a[:, 1:3], (Float(S),)),
    OpCase(
        "narrow_negative_start", lambda a: dg.narrow(a, 0, -2, 2), lambda a: a[-2:], (Float(S),)
    ),
    # flip / roll / triangles
    OpCase("flip", lambda a: a.flip(0, 2), lambda a: np.flip(a, (0, 2)), (Float(S3),)),
    OpCase("flip_list", lambda a: dg.flip(a, dims=[-1]), lambda a: a[..., ::-1], (Float(S),)),
    OpCase("fliplr", dg.fliplr, np.fliplr, (Float(S),)),
    OpCase("flipud", lambda a: a.flipud(), np.flipud, (Float(S),)),
    OpCase("roll_flat", lambda a: a.roll(5), lambda a: np.roll(a, 5), (Float(S),)),
    OpCase(
        "roll_dims",
        lambda a: dg.roll(a, (1, -2), (0, 2)),
        lambda a: np.roll(a, (1, -2), (0, 2)),
        (Float(S3),),
    ),
    OpCase("tril", dg.tril, np.tril, (Float(S),)),
    OpCase("tril_diag", lambda a: a.tril(1), lambda a: np.tril(a, 1), (Float(S3),)),
    OpCase("triu", lambda a: dg.triu(a, -1), lambda a: np.triu(a, -1), (Float(S3),)),
    # pad
    OpCase("pad_constant", lambda a: dg.pad(a, (1, 2)), lambda a: _pad_ref(a, (1, 2)), (Float(S),)),
    OpCase(
        "pad_constant_value_2d",
        lambda a: dg.pad(a, (1, 1, 2, 0), value=0.5),
        lambda a: _pad_ref(a, (1, 1, 2, 0), value=0.5),
        (Float(S3),),
    ),
    OpCase(
        "pad_crop",
        lambda a: dg.pad(a, (-1, 2, 0, -2)),
        lambda a: _pad_ref(a, (-1, 2, 0, -2)),
        (Float(S3),),
    ),
    OpCase(
        "pad_reflect",
        lambda a: dg.pad(a, (3, 2), mode="reflect"),
        lambda a: _pad_ref(a, (3, 2), "reflect"),
        (Float((2, 5)),),
    ),
    OpCase(
        "pad_reflect_2d",
        lambda a: dg.pad(a, (1, 2, 2, 1), mode="reflect"),
        lambda a: _pad_ref(a, (1, 2, 2, 1), "reflect"),
        (Float(S3),),
    ),
    OpCase(
        "pad_replicate",
        lambda a: dg.pad(a, (2, 3, 1, 0), mode="replicate"),
        lambda a: _pad_ref(a, (2, 3, 1, 0), "replicate"),
        (Float(S3),),
    ),
    OpCase(
        "pad_circular",
        lambda a: dg.pad(a, (4, 1), mode="circular"),
        lambda a: _pad_ref(a, (4, 1), "circular"),
        (Float(S),),
    ),
]

globals().update(make_tests(CASES))


def _x(*shape, grad=True):
    rng = np.random.default_rng(1)
    return dg.tensor(rng.standard_normal(shape), requires_grad=grad)


# ---- views share storage and the version counter ------------------------------------------
@pytest.mark.parametrize(
    "make_view",
    [
        lambda y: y.view(-1),
        lambda y: y.reshape(12),
        lambda y: y.T,
        lambda y: y.permute(1, 0),
        lambda y: y.unsqueeze(0),
        lambda y: y[1],
        lambda y: y[:, 1:3],
        lambda y: y.narrow(0, 0, 2),
        lambda y: y.split(2)[1],
        lambda y: y.unbind(1)[0],
        lambda y: y.squeeze(),
        lambda y: y.movedim(0, 1),
        lambda y: y.flatten(),
    ],
)
def test_inplace_through_view_is_detected(make_view):
    x = _x(3, 4)
    y = x.exp()  # saves its output
    v = make_view(y)
    assert v._version is y._version
    before = y.detach().numpy().copy()
    with dg.no_grad():
        v.mul_(2)
    assert y._version_value == 1 and not np.array_equal(y.detach().numpy(), before)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward(dg.ones_like(y))


def test_view_writes_reach_the_base():
    x = dg.zeros(3, 4)
    x.T[1].fill_(5.0)
    x.view(12)[0] = 7.0
    want = np.zeros((3, 4))
    want[:, 1] = 5
    want[0, 0] = 7
    np.testing.assert_array_equal(x.numpy(), want)


def test_copies_do_not_share_the_counter():
    y = _x(3, 4).exp()
    for copy in (
        y.T.reshape(12),
        y.flip(0),
        y[:1].flip(0),
        y.roll(1),
        y.repeat(1, 1),
        y.tril(),
        dg.cat([y, y]),
    ):
        assert copy._version is not y._version
        copy.add_(1)
    y.backward(dg.ones_like(y))  # no error: y itself was not changed


def test_view_needs_compatible_layout():
    x = _x(3, 4, grad=False)
    with pytest.raises(RuntimeError, match=r"view size is not compatible.*\.reshape"):
        x.T.view(12)
    assert x.T.reshape(12).shape == (12,)
    assert x.T.view(2, 2, 3).shape == (2, 2, 3)  # splitting a dimension is always a view


def test_view_dtype_reinterprets_bytes():
    x = dg.tensor([1.0, -2.0], dtype=dg.float32)
    np.testing.assert_array_equal(
        x.view(dg.int32).numpy(), np.array([1.0, -2.0], np.float32).view(np.int32)
    )


# ---- semantics ----------------------------------------------------------------------------
def test_cat_promotes_dtypes_and_keeps_grads():
    a = dg.ones(2, dtype=dg.float32, requires_grad=True)
    b = dg.tensor([1, 2])
    c = dg.ones(1, dtype=dg.float64)
    out = dg.cat([a, b, c])
    assert out.dtype == dg.float64
    np.testing.assert_array_equal(out.detach().numpy(), [1, 1, 1, 2, 1])
    out.sum().backward()
    assert a.grad.dtype == dg.float32
    np.testing.assert_array_equal(a.grad.numpy(), [1, 1])
    assert dg.cat([dg.tensor([1, 2]), dg.tensor([3])]).dtype == dg.int64


def test_cat_of_only_empty_tensors():
    assert dg.cat([dg.zeros(0), dg.zeros(0)]).shape == (0,)


@pytest.mark.parametrize(
    "n, chunks, sizes", [(5, 3, [2, 2, 1]), (6, 4, [2, 2, 2]), (6, 3, [2, 2, 2]), (2, 5, [1, 1])]
)
def test_chunk_sizes_follow_pytorch(n, chunks, sizes):
    assert [p.shape[0] for p in dg.arange(n).chunk(chunks)] == sizes


def test_squeeze_keeps_non_unit_dims_and_handles_0d():
    x = dg.zeros(3, 1, 4)
    assert x.squeeze(0).shape == (3, 1, 4)
    assert dg.zeros(()).squeeze().shape == ()
    assert dg.zeros(()).squeeze(0).shape == ()


def test_expand_is_a_view_with_new_leading_dims():
    x = dg.arange(3.0).reshape(3, 1)
    y = x.expand(2, 3, 4)
    assert y.shape == (2, 3, 4) and y._version is x._version
    np.testing.assert_array_equal(y.numpy()[1, :, 2], [0, 1, 2])


def test_repeat_gradient_sums_the_copies():
    x = _x(2, 3)
    x.repeat(2, 3, 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 3), 6.0))


def test_pad_gradient_counts_reflected_copies():
    x = dg.ones(4, requires_grad=True, dtype=dg.float64)
    dg.pad(x, (2, 2), mode="reflect").sum().backward()
    # output = x2 x1 | x0 x1 x2 x3 | x2 x1
    np.testing.assert_array_equal(x.grad.numpy(), [1, 3, 3, 1])


def test_tril_triu_inplace():
    x = dg.ones(3, 3)
    x.triu_(1)
    np.testing.assert_array_equal(x.numpy(), np.triu(np.ones((3, 3)), 1))
    y = _x(3, 3).exp()
    z = y * 1
    z.tril_()
    z.sum().backward()


# ---- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fn, exc, match",
    [
        (
            lambda x: x.reshape(5, 2),
            RuntimeError,
            r"shape '\[5, 2\]' is invalid for input of size 12",
        ),
        (lambda x: x.reshape(-1, -1), RuntimeError, "only one dimension can be inferred"),
        (lambda x: x.permute(0, 1, 2), RuntimeError, "number of dims don't match"),
        (lambda x: x.permute(1, 1), RuntimeError, "duplicate dims"),
        (lambda x: x.transpose(0, 2), IndexError, r"Dimension out of range"),
        (
            lambda x: x.unsqueeze(3),
            IndexError,
            r"Dimension out of range \(expected to be in range "
            r"of \[-3, 2\], but got 3\)",
        ),
        (
            lambda x: x.expand(3, 5),
            RuntimeError,
            r"expanded size of the tensor \(5\) must match the existing size \(4\) at non-singleton "
            r"dimension 1",
        ),
        (lambda x: x.expand(4), RuntimeError, "number of sizes provided"),
        (
            lambda x: dg.cat([x, dg.zeros(3, 5)]),
            RuntimeError,
            "Sizes of tensors must match except in dimension 0. Expected size 4 but got size 5 for "
            "tensor number 1",
        ),
        (
            lambda x: dg.cat([x, dg.zeros(3)]),
            RuntimeError,
            "same number of dimensions: got 2 and 1",
        ),
        (lambda x: dg.cat([]), RuntimeError, "non-empty list"),
        (lambda x: dg.cat([x, 1]), TypeError, "element 1 is int"),
        (
            lambda x: dg.stack([x, x.T]),
            RuntimeError,
            r"equal size, but got \[3, 4\] at entry 0 and "
            r"\[4, 3\] at entry 1",
        ),
        (lambda x: x.split([1, 1], 0), RuntimeError, "sum exactly to 3"),
        (lambda x: x.chunk(0), RuntimeError, "greater than 0"),
        (lambda x: x.narrow(1, 3, 2), RuntimeError, r"start \(3\) \+ length \(2\) exceeds"),
        (lambda x: x.repeat(2), RuntimeError, "can not be smaller"),
        (lambda x: x.t().unsqueeze(0).t(), RuntimeError, "expects a tensor with <= 2 dimensions"),
        (lambda x: x[0].mT, RuntimeError, "mT is only supported on matrices"),
        (lambda x: x[0].tril(), RuntimeError, "at least 2 dimensions"),
        (lambda x: x.roll((1, 2), 0), RuntimeError, "shifts and dimensions must align"),
        (lambda x: x.flatten(1, 0), RuntimeError, "start_dim"),
        (lambda x: dg.pad(x, (1,)), RuntimeError, "padding length must be even"),
        (lambda x: dg.pad(x, (4, 0), mode="reflect"), RuntimeError, "too large for dimension 1"),
        (lambda x: dg.pad(x, (1, 1), mode="wrap"), ValueError, "mode must be one of"),
        (
            lambda x: dg.pad(x, (1, 1), mode="replicate", value=1.0),
            RuntimeError,
            "doesn't take in value",
        ),
        (lambda x: dg.pad(x, (-3, -2)), RuntimeError, "negative"),
    ],
)
def test_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn(dg.zeros(3, 4))


# ---- the differentiable namespace matches numpy -------------------------------------------
_A = np.random.default_rng(2).standard_normal((2, 3, 4))


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("reshape", (_A, (4, 6)), {}),
        ("reshape", (_A, -1), {}),
        ("ravel", (_A,), {}),
        ("broadcast_to", (_A[:, :1], (5, 2, 3, 4)), {}),
        ("expand_dims", (_A, (0, -1)), {}),
        ("expand_dims", (_A, 1), {}),
        ("squeeze", (_A[:, :1, None],), {}),
        ("squeeze", (_A[:, :1], 1), {}),
        ("transpose", (_A,), {}),
        ("transpose", (_A, (1, 2, 0)), {}),
        ("swapaxes", (_A, 0, 2), {}),
        ("moveaxis", (_A, 0, -1), {}),
        ("concatenate", ([_A, _A[:1]],), {}),
        ("concatenate", ([_A, _A], -1), {}),
        ("stack", ([_A, _A], 1), {}),
        ("split", (_A, 3, 1), {}),
        ("split", (_A, [1, 3], 2), {}),
        ("flip", (_A,), {}),
        ("flip", (_A, 1), {}),
        ("roll", (_A, 2), {}),
        ("roll", (_A, -1, 2), {}),
        ("tril", (_A,), {}),
        ("triu", (_A, 1), {}),
        ("tile", (_A, 2), {}),
        ("tile", (_A, (2, 1, 1, 2)), {}),
        ("pad", (_A, 1), {}),
        ("pad", (_A, ((0, 0), (1, 2), (0, 1))), {"constant_values": 3.0}),
        ("pad", (_A, ((0, 0), (1, 1), (2, 3))), {"mode": "reflect"}),
        ("pad", (_A, 2), {"mode": "edge"}),
        ("pad", (_A, 2), {"mode": "wrap"}),
    ],
)
def test_graph_namespace_matches_numpy(name, args, kwargs):
    targs = tuple(
        dg.tensor(a)
        if isinstance(a, np.ndarray)
        else [dg.tensor(x) for x in a]
        if isinstance(a, list)
        else a
        for a in args
    )
    got = getattr(graph_xp, name)(*targs, **kwargs)
    want = getattr(np, name)(*args, **kwargs)
    if isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w)
    else:
        np.testing.assert_array_equal(got.numpy(), want)
