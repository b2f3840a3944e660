import numpy as np
import pytest

import distgrad as dg
from distgrad.ops import conv as C
from tests.ops.harness import Float, OpCase, make_tests


# ---- naive references: explicit loops over output (or input) positions ---------------------
def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """padding: int, pair or (top, bottom, left, right)."""
    (sh, sw), (dh, dw) = _pairs(stride), _pairs(dilation)
    p = _pairs(padding)
    pt, pb, pl, pr = (p[0], p[0], p[1], p[1]) if len(p) == 2 else p
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, f, oh, ow), dtype=x.dtype)
    fg = f // groups
    for o in range(f):
        grp = o // fg
        for i in range(oh):
            for j in range(ow):
                patch = x[
                    :,
                    grp * cg : (grp + 1) * cg,
                    i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                    j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                ]
                out[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3))
    if b is not None:
        out += b[None, :, None, None]
    return out


def ref_conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    p = padding if isinstance(padding, int) else padding[0]
    out = ref_conv2d(
        x[:, :, None, :], w[:, :, None, :], b, (1, stride), (0, p), (1, dilation), groups
    )
    return out[:, :, 0, :]


def ref_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Scatter every input pixel times the kernel into the output."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(
        _pairs, (stride, padding, output_padding, dilation)
    )
    n, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    cg = c // groups
    full = np.zeros(
        (
            n,
            fg * groups,
            (h - 1) * sh + dh * (kh - 1) + 1 + oph,
            (wd - 1) * sw + dw * (kw - 1) + 1 + opw,
        ),
        dtype=x.dtype,
    )
    for ci in range(c):
        grp = ci // cg
        for i in range(h):
            for j in range(wd):
                for a in range(kh):
                    for e in range(kw):
                        full[:, grp * fg : (grp + 1) * fg, i * sh + a * dh, j * sw + e * dw] += (
                            x[:, ci, i, j][:, None] * w[ci, :, a, e][None, :]
                        )
    out = full[:, :, ph : full.shape[2] - ph, pw : full.shape[3] - pw]
    if b is not None:
        out = out + b[None, :, None, None]
    return out


def ref_unfold(x, kernel, dilation=1, padding=0, stride=1):
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = map(_pairs, (kernel, dilation, padding, stride))
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, w = x.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    blocks = [
        x[
            :, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw
        ].reshape(n, -1)
        for i in range(oh)
        for j in range(ow)
    ]
    return np.stack(blocks, axis=-1)


def ref_fold(cols, size, kernel, dilation=1, padding=0, stride=1):
    (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = map(
        _pairs, (size, kernel, dilation, padding, stride)
    )
    n = cols.shape[0]
    out = np.zeros((n, cols.shape[1] // (kh * kw), h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for blk in range(cols.shape[2]):
        i, j = divmod(blk, ow)
        out[
            :, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw
        ] += cols[:, :, blk].reshape(n, -1, kh, kw)
    return out[:, :, ph : ph + h, pw : pw + w]


def _conv2d_case(name, x, w, bias=True, **kw):
    f = w[0]
    if bias:
        return OpCase(
            name,
            lambda a, b, c: C.conv2d(a, b, c, **kw),
            lambda a, b, c: ref_conv2d(a, b, c, **kw),
            (Float(x), Float(w), Float((f,))),
            double=False,
        )
    return OpCase(
        name,
        lambda a, b: C.conv2d(a, b, **kw),
        lambda a, b: ref_conv2d(a, b, **kw),
        (Float(x), Float(w)),
        double=False,
    )


CASES = [
    _conv2d_case("conv2d_pad1_wide", (2, 2, 5, 6), (3, 2, 3, 3), padding=1),
    _conv2d_case("conv2d_valid_narrow", (2, 3, 5, 5), (2, 3, 3, 3), bias=False),
    _conv2d_case("conv2d_stride2", (2, 2, 7, 6), (3, 2, 3, 2), stride=2, padding=(1, 0)),
    _conv2d_case("conv2d_stride_1x2", (1, 2, 6, 7), (2, 2, 2, 3), stride=(1, 2), padding=1),
    _conv2d_case("conv2d_dilation", (1, 2, 7, 7), (2, 2, 2, 3), dilation=(2, 1), padding=(0, 1)),
    _conv2d_case("conv2d_groups", (2, 4, 4, 5), (6, 2, 2, 2), groups=2, padding=1),
    _conv2d_case("conv2d_depthwise", (1, 3, 5, 5), (3, 1, 3, 3), groups=3, stride=2),
    _conv2d_case("conv2d_1x1", (2, 3, 3, 4), (2, 3, 1, 1)),
    OpCase(
        "conv2d_same_even_kernel",
        lambda a, b: C.conv2d(a, b, padding="same"),
        lambda a, b: ref_conv2d(a, b, padding=(1, 2, 0, 1)),
        (Float((1, 2, 5, 6)), Float((2, 2, 4, 2))),
        double=False,
    ),
    OpCase(
        "conv2d_unbatched",
        lambda a, b: C.conv2d(a, b, padding="valid"),
        lambda a, b: ref_conv2d(a[None], b)[0],
        (Float((2, 4, 5)), Float((3, 2, 2, 2))),
        double=False,
    ),
    OpCase(
        "conv1d",
        lambda a, b, c: C.conv1d(a, b, c, stride=2, padding=1),
        lambda a, b, c: ref_conv1d(a, b, c, stride=2, padding=1),
        (Float((2, 3, 9)), Float((4, 3, 3)), Float((4,))),
        double=False,
    ),
    OpCase(
        "conv1d_same_dilated_groups",
        lambda a, b: C.conv1d(a, b, padding="same", dilation=2, groups=2),
        lambda a, b: ref_conv1d(np.pad(a, ((0, 0), (0, 0), (2, 2))), b, dilation=2, groups=2),
        (Float((2, 4, 8)), Float((2, 2, 3))),
        double=False,
    ),
    OpCase(
        "conv_transpose2d",
        lambda a, b, c: C.conv_transpose2d(a, b, c, stride=2, padding=1, output_padding=1),
        lambda a, b, c: ref_conv_transpose2d(a, b, c, stride=2, padding=1, output_padding=1),
        (Float((2, 3, 3, 4)), Float((3, 2, 3, 3)), Float((2,))),
        double=False,
    ),
    OpCase(
        "conv_transpose2d_groups_dilation",
        lambda a, b: C.conv_transpose2d(a, b, stride=(1, 2), groups=2, dilation=(2, 1)),
        lambda a, b: ref_conv_transpose2d(a, b, stride=(1, 2), groups=2, dilation=(2, 1)),
        (Float((1, 4, 3, 3)), Float((4, 1, 2, 3))),
        double=False,
    ),
    OpCase(
        "conv_transpose1d",
        lambda a, b: C.conv_transpose1d(a, b, stride=3, padding=1),
        lambda a, b: ref_conv_transpose2d(
            a[:, :, None], b[:, :, None], stride=(1, 3), padding=(0, 1)
        )[:, :, 0],
        (Float((2, 2, 4)), Float((2, 3, 4))),
        double=False,
    ),
    OpCase(
        "unfold",
        lambda a: C.unfold(a, (2, 3), dilation=(1, 2), padding=1, stride=(2, 1)),
        lambda a: ref_unfold(a, (2, 3), (1, 2), 1, (2, 1)),
        (Float((2, 2, 4, 5)),),
        double=False,
    ),
    OpCase(
        "fold",
        lambda a: C.fold(a, (4, 5), 2, padding=(1, 0), stride=(1, 2)),
        lambda a: ref_fold(a, (4, 5), 2, 1, (1, 0), (1, 2)),
        (Float((2, 8, 10)),),
        double=False,
    ),
]

globals().update(make_tests(CASES))


# ---- targeted tests ---------------------------------------------------------------------------
def _t(*shape, dtype=np.float32):
    return dg.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


def test_larger_conv_float32_matches_reference():
    x, w, b = _t(3, 5, 12, 13), _t(8, 5, 3, 3), _t(8)
    got = C.conv2d(x, w, b, padding=1).numpy()
    want = ref_conv2d(
        x.numpy().astype(np.float64),
        w.numpy().astype(np.float64),
        b.numpy().astype(np.float64),
        padding=1,
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert got.dtype == np.float32 and got.flags.c_contiguous


def test_only_needed_grads_are_computed():
    x = _t(2, 3, 6, 6, dtype=np.float64)
    w = dg.tensor(np.ones((4, 3, 3, 3)), requires_grad=True)
    C.conv2d(x, w).backward(dg.tensor(np.ones((2, 4, 4, 4))))
    want = ref_unfold(x.numpy(), 3).sum(axis=(0, 2)).reshape(3, 3, 3)
    np.testing.assert_allclose(w.grad.numpy(), np.broadcast_to(want, (4, 3, 3, 3)))
    assert x.grad is None


def test_wrong_channel_count_names_expected_and_got():
    with pytest.raises(
        RuntimeError,
        match=r"expected input\[2, 4, 5, 5\] to have 3 channels, "
        r"but got 4 channels",
    ):
        C.conv2d(_t(2, 4, 5, 5), _t(6, 3, 3, 3))
    with pytest.raises(RuntimeError, match="to have 2 channels, but got 3"):
        C.conv_transpose2d(_t(1, 3, 4, 4), _t(2, 3, 3, 3))


def test_kernel_larger_than_padded_input():
    with pytest.raises(
        RuntimeError,
        match=r"padded input size per channel: \(4 x 4\)\. Kernel "
        r"size: \(5 x 5\)",
    ):
        C.conv2d(_t(1, 1, 2, 2), _t(1, 1, 5, 5), padding=1)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        C.conv1d(_t(1, 1, 3), _t(1, 1, 2), dilation=3)


def test_groups_must_divide_channels():
    with pytest.raises(
        RuntimeError,
        match=r"groups=3, expected weight to be divisible by 3 at "
        r"dimension 0, but got weight of size \[4, 1, 3, 3\]",
    ):
        C.conv2d(_t(1, 3, 5, 5), _t(4, 1, 3, 3), groups=3)
    with pytest.raises(RuntimeError, match="to have 4 channels, but got 5"):
        C.conv2d(_t(1, 5, 5, 5), _t(4, 2, 3, 3), groups=2)


def test_other_bad_arguments():
    with pytest.raises(RuntimeError, match="expected bias to be 1-dimensional with 4 elements"):
        C.conv2d(_t(1, 3, 5, 5), _t(4, 3, 3, 3), _t(3))
    with pytest.raises(
        RuntimeError,
        match=r"Input type \(distgrad.float32\) and weight type "
        r"\(distgrad.float64\)",
    ):
        C.conv2d(_t(1, 3, 5, 5), _t(4, 3, 3, 3, dtype=np.float64))
    with pytest.raises(RuntimeError, match="Expected 3D \\(unbatched\\) or 4D \\(batched\\)"):
        C.conv2d(_t(5, 5), _t(4, 3, 3, 3))
    with pytest.raises(RuntimeError, match="not supported for strided"):
        C.conv2d(_t(1, 3, 5, 5), _t(4, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="Invalid padding string 'full'"):
        C.conv2d(_t(1, 3, 5, 5), _t(4, 3, 3, 3), padding="full")
    with pytest.raises(RuntimeError, match="non-positive stride"):
        C.conv2d(_t(1, 3, 5, 5), _t(4, 3, 3, 3), stride=0)
    with pytest.raises(RuntimeError, match="output padding must be smaller"):
        C.conv_transpose2d(_t(1, 3, 4, 4), _t(3, 2, 3, 3), stride=2, output_padding=2)
    with pytest.raises(RuntimeError, match="expected size|sliding block"):
        C.fold(_t(1, 8, 7), (4, 5), 2)


# ---- the chunked patch-matrix paths (small workspaces: several chunks, a ragged last one) ---
@pytest.mark.parametrize(
    "x_shape,w_shape,kw",
    [
        ((5, 3, 7, 8), (4, 3, 3, 3), dict(padding=1)),  # wide, flipped-kernel input gradient
        ((5, 2, 9, 6), (6, 2, 3, 2), dict(padding=(1, 0))),  # F > 2C: windows summed, wide
        ((5, 2, 8, 9), (6, 1, 3, 3), dict(padding=(2, 1), dilation=2, groups=2)),
        ((5, 2, 9, 9), (6, 2, 3, 3), dict(stride=(2, 1), padding=1)),  # windows summed, exact
        ((5, 4, 8, 9), (4, 2, 3, 3), dict(padding=2, dilation=2, groups=2)),
        ((5, 3, 9, 9), (4, 3, 3, 3), dict(stride=2, padding=1)),  # strided: exact windows
        ((5, 3, 6, 12), (4, 3, 2, 5), dict()),  # short rows: wide with 50% garbage columns
        ((5, 2, 3, 40), (3, 2, 1, 13), dict()),  # long rows, 43% garbage: exact windows
        ((5, 3, 6, 6), (4, 3, 1, 1), dict(padding=2)),  # padding beyond the kernel's reach
    ],
)
@pytest.mark.parametrize("fold_below", [0, 1 << 20])  # per-sample GEMMs / samples folded
@pytest.mark.parametrize("per_chunk", [1, 2])  # samples per chunk (2: a ragged last chunk)
def test_chunked_conv_matches_reference(monkeypatch, x_shape, w_shape, kw, fold_below, per_chunk):
    monkeypatch.setattr(C, "FOLD_BELOW", fold_below)
    monkeypatch.setattr(C.Patches, "batch", lambda self, xp, n, k, itemsize: min(n, per_chunk))
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    xt, wt, bt = (dg.tensor(a, requires_grad=True) for a in (x, w, b))
    y = C.conv2d(xt, wt, bt, **kw)
    want = ref_conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(y.shape)
    y.backward(dg.tensor(g))
    monkeypatch.setattr(C.Patches, "batch", lambda self, xp, n, k, itemsize: n)  # one chunk
    xt2, wt2, bt2 = (dg.tensor(a, requires_grad=True) for a in (x, w, b))
    C.conv2d(xt2, wt2, bt2, **kw).backward(dg.tensor(g))
    for a, a2 in ((xt, xt2), (wt, wt2), (bt, bt2)):
        np.testing.assert_allclose(a.grad.numpy(), a2.grad.numpy(), rtol=1e-10, atol=1e-10)
    # and against central differences of the reference in one direction
    d = rng.standard_normal(x_shape) * 1e-6
    fd = ((ref_conv2d(x + d, w, b, **kw) - ref_conv2d(x - d, w, b, **kw)) * g).sum() / 2
    np.testing.assert_allclose((xt.grad.numpy() * d).sum(), fd, rtol=1e-5)


def test_saved_input_modified_in_place_is_an_error():
    x = dg.tensor(np.ones((1, 1, 4, 4)), requires_grad=True) * 1
    w = dg.tensor(np.ones((1, 1, 3, 3)), requires_grad=True)
    y = C.conv2d(x, w)
    x.add_(1)  # the kernel's gradient needs x as it was (PyTorch saves the input too)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_convs_sharing_workspace_shapes_keep_their_own_zeros():
    # (2, 3, 7) inputs with kernels 3 and 2: both wide with rows of 7, one with 5 outputs a row
    # and one with 6; a scratch buffer shared by shape would give the first the second's
    # gradient values in what it takes as zero columns
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7))
    for width in (3, 2, 3):
        w = rng.standard_normal((4, 3, width))
        xt, wt = dg.tensor(x, requires_grad=True), dg.tensor(w, requires_grad=True)
        g = rng.standard_normal((2, 4, 8 - width))
        C.conv1d(xt, wt).backward(dg.tensor(g))
        want_w = np.einsum(
            "nfo,ncok->fck", g, np.lib.stride_tricks.sliding_window_view(x, width, 2)
        )
        np.testing.assert_allclose(wt.grad.numpy(), want_w, rtol=1e-10, atol=1e-10)
