import math

import numpy as np
import pytest

import distgrad as dg
from distgrad.ops import pool as P
from tests.ops.harness import Fixed, Float, OpCase, make_tests


# ---- naive references: explicit loops over output positions -------------------------------
def _pairs(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _out(size, k, s, p, d, ceil_mode):
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    return out - 1 if ceil_mode and (out - 1) * s >= size + p else out


def ref_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(output, flat index in H*W of the first maximum of each window)."""
    (kh, kw), (ph, pw), (dh, dw) = map(_pairs, (kernel_size, padding, dilation))
    sh, sw = _pairs(stride if stride is not None else kernel_size)
    n, c, h, w = x.shape
    oh, ow = _out(h, kh, sh, ph, dh, ceil_mode), _out(w, kw, sw, pw, dw, ceil_mode)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    idx = np.empty((n, c, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            best = np.full((n, c), -np.inf)
            arg = np.zeros((n, c), dtype=np.int64)
            for a in range(kh):
                for e in range(kw):
                    r, q = i * sh - ph + a * dh, j * sw - pw + e * dw
                    if 0 <= r < h and 0 <= q < w:
                        v = x[:, :, r, q]
                        arg = np.where(v > best, r * w + q, arg)
                        best = np.maximum(best, v)
            out[:, :, i, j], idx[:, :, i, j] = best, arg
    return out, idx


def ref_avg_pool2d(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
):
    (kh, kw), (ph, pw) = _pairs(kernel_size), _pairs(padding)
    sh, sw = _pairs(stride if stride is not None else kernel_size)
    n, c, h, w = x.shape
    oh, ow = _out(h, kh, sh, ph, 1, ceil_mode), _out(w, kw, sw, pw, 1, ceil_mode)
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, q0 = i * sh - ph, j * sw - pw
            r1, q1 = min(r0 + kh, h + ph), min(q0 + kw, w + pw)
            total = x[:, :, max(r0, 0) : min(r1, h), max(q0, 0) : min(q1, w)].sum(axis=(2, 3))
            if divisor_override:
                count = divisor_override
            elif count_include_pad:
                count = (r1 - r0) * (q1 - q0)
            else:
                count = (min(r1, h) - max(r0, 0)) * (min(q1, w) - max(q0, 0))
            out[:, :, i, j] = total / count
    return out


def ref_adaptive_avg_pool2d(x, size):
    h, w = x.shape[-2:]
    oh, ow = _pairs(size)
    out = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            r0, r1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
            q0, q1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
            out[..., i, j] = x[..., r0:r1, q0:q1].mean(axis=(-2, -1))
    return out


def _1d(ref):
    """A 2-d reference used for 1-d pooling: height 1."""

    def run(x, *args, **kw):
        out = ref(x[:, :, None, :], *args, **kw)
        return tuple(o[:, :, 0] for o in out) if isinstance(out, tuple) else out[:, :, 0]

    return run


def _max_case(name, shape, **kw):
    return OpCase(
        name,
        lambda a: P.max_pool2d(a, **kw),
        lambda a: ref_max_pool2d(a, **kw)[0],
        (Float(shape),),
        double=False,
    )


def _avg_case(name, shape, **kw):
    return OpCase(
        name,
        lambda a: P.avg_pool2d(a, **kw),
        lambda a: ref_avg_pool2d(a, **kw),
        (Float(shape),),
        double=False,
    )


TIES = np.array(
    [[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 0.0, 0.0], [5.0, 5.0, 1.0, 2.0], [5.0, 5.0, 2.0, 1.0]]]]
)

CASES = [
    _max_case("max_pool2d_2x2", (2, 3, 4, 6), kernel_size=2),
    _max_case("max_pool2d_3x3_s2_pad1", (1, 2, 7, 6), kernel_size=3, stride=2, padding=1),
    _max_case("max_pool2d_ceil", (2, 1, 5, 7), kernel_size=2, stride=2, ceil_mode=True),
    _max_case(
        "max_pool2d_ceil_pad_overlap",
        (1, 2, 6, 5),
        kernel_size=3,
        stride=2,
        padding=1,
        ceil_mode=True,
    ),
    _max_case(
        "max_pool2d_dilation_rect",
        (1, 2, 8, 9),
        kernel_size=(2, 3),
        stride=(3, 2),
        padding=(1, 0),
        dilation=(2, 1),
    ),
    _max_case(
        "max_pool2d_stride1_dilated", (1, 2, 6, 6), kernel_size=2, stride=1, dilation=2, padding=1
    ),
    OpCase(
        "max_pool2d_unbatched",
        lambda a: P.max_pool2d(a, 2),
        lambda a: ref_max_pool2d(a[None], 2)[0][0],
        (Float((3, 4, 5)),),
        double=False,
    ),
    OpCase(
        "max_pool2d_indices",
        lambda a: P.max_pool2d(a, 3, 2, 1, return_indices=True),
        lambda a: ref_max_pool2d(a, 3, 2, 1),
        (Float((2, 2, 5, 6)),),
        double=False,
    ),
    OpCase(
        "max_pool2d_ties_first_max",
        lambda a: P.max_pool2d(a, 2, 1, return_indices=True),
        lambda a: ref_max_pool2d(a, 2, 1),
        (Fixed(TIES, grad=False),),
        grad=False,
    ),
    OpCase(
        "max_pool1d",
        lambda a: P.max_pool1d(a, 3, 2, 1, return_indices=True),
        lambda a: _1d(ref_max_pool2d)(a, (1, 3), (1, 2), (0, 1)),
        (Float((2, 3, 8)),),
        double=False,
    ),
    _avg_case("avg_pool2d_2x2", (2, 3, 4, 6), kernel_size=2),
    _avg_case("avg_pool2d_pad_include", (1, 2, 5, 6), kernel_size=3, stride=2, padding=1),
    _avg_case(
        "avg_pool2d_pad_exclude",
        (1, 2, 5, 6),
        kernel_size=3,
        stride=2,
        padding=1,
        count_include_pad=False,
    ),
    _avg_case(
        "avg_pool2d_ceil",
        (1, 2, 5, 7),
        kernel_size=(2, 3),
        stride=2,
        padding=(1, 1),
        ceil_mode=True,
    ),
    _avg_case(
        "avg_pool2d_overlap_divisor", (2, 1, 5, 5), kernel_size=3, stride=1, divisor_override=4
    ),
    OpCase(
        "avg_pool1d",
        lambda a: P.avg_pool1d(a, 4, 3, 2, count_include_pad=False),
        lambda a: _1d(ref_avg_pool2d)(a, (1, 4), (1, 3), (0, 2), count_include_pad=False),
        (Float((2, 2, 9)),),
        double=False,
    ),
    OpCase(
        "adaptive_avg_pool2d_divisible",
        lambda a: P.adaptive_avg_pool2d(a, (2, 3)),
        lambda a: ref_adaptive_avg_pool2d(a, (2, 3)),
        (Float((2, 3, 4, 6)),),
        double=False,
    ),
    OpCase(
        "adaptive_avg_pool2d_global",
        lambda a: P.adaptive_avg_pool2d(a, 1),
        lambda a: ref_adaptive_avg_pool2d(a, 1),
        (Float((2, 3, 5, 4)),),
        double=False,
    ),
    OpCase(
        "adaptive_avg_pool2d_uneven",
        lambda a: P.adaptive_avg_pool2d(a, (3, 4)),
        lambda a: ref_adaptive_avg_pool2d(a, (3, 4)),
        (Float((2, 2, 7, 6)),),
        double=False,
    ),
    OpCase(
        "adaptive_avg_pool2d_keep_height",
        lambda a: P.adaptive_avg_pool2d(a, (None, 2)),
        lambda a: ref_adaptive_avg_pool2d(a, (3, 2)),
        (Float((2, 3, 5)),),
        double=False,
    ),
    OpCase(
        "adaptive_avg_pool1d",
        lambda a: P.adaptive_avg_pool1d(a, 3),
        lambda a: ref_adaptive_avg_pool2d(a[:, :, None], (1, 3))[:, :, 0],
        (Float((2, 2, 7)),),
        double=False,
    ),
]

globals().update(make_tests(CASES))


# ---- targeted tests ---------------------------------------------------------------------------
def test_max_pool_gradient_goes_to_first_maximum():
    x = dg.tensor(TIES, requires_grad=True)
    P.max_pool2d(x, 2).backward(dg.tensor(np.array([[[[1.0, 2.0], [3.0, 4.0]]]])))
    want = np.zeros((1, 1, 4, 4))
    want[0, 0, 0, 1], want[0, 0, 0, 2], want[0, 0, 2, 0], want[0, 0, 2, 3] = 1, 2, 3, 4
    np.testing.assert_array_equal(x.grad.numpy(), want)


def test_overlapping_max_windows_accumulate_gradient():
    x = dg.tensor(
        np.array([[[[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]]]), requires_grad=True
    )
    P.max_pool2d(x, 2, stride=1).backward(dg.tensor(np.ones((1, 1, 2, 2))))
    assert x.grad.numpy()[0, 0, 1, 1] == 4 and x.grad.numpy().sum() == 4


def test_float32_stays_float32_and_contiguous():
    x = dg.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    for out in (P.max_pool2d(x, 2), P.avg_pool2d(x, 3, 2, 1), P.adaptive_avg_pool2d(x, 3)):
        assert out.dtype == dg.float32 and out.is_contiguous()


def test_bad_arguments():
    x = dg.tensor(np.zeros((1, 2, 3, 3)))
    with pytest.raises(
        RuntimeError,
        match=r"Given input size: \(2x3x3\)\. Calculated output "
        r"size: \(2x0x0\)\. Output size is too small",
    ):
        P.max_pool2d(x, 4)
    with pytest.raises(RuntimeError, match="pad should be smaller than or equal to half"):
        P.avg_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="Expected 3D \\(unbatched\\) or 4D \\(batched\\)"):
        P.max_pool2d(dg.tensor(np.zeros((3, 3))), 2)
    with pytest.raises(RuntimeError, match="divisor must be not zero"):
        P.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(RuntimeError, match="stride and dilation must be positive"):
        P.max_pool2d(x, 2, stride=0)
