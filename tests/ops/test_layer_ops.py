"""Resampling, adaptive max pooling, embedding bags, rrelu and the composed losses in the op
harness: forward against numpy references written directly from PyTorch's documented
formulas (per output element, not separably), central-difference gradients, double backward
where the op is composed of twice-differentiable ops."""

import math

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F
from tests.ops.harness import Fixed, Float, OpCase, make_tests


def _src(out, size, align, scale=None, clamp=True):
    d = np.arange(out, dtype=np.float64)
    if align:
        return d * ((size - 1) / (out - 1) if out > 1 else 0.0)
    r = 1 / scale if scale else size / out
    s = (d + 0.5) * r - 0.5
    return np.maximum(s, 0) if clamp else s


def _bilinear_ref(x, out_hw, align, scale=None):
    n, c, h, w = x.shape
    oh, ow = out_hw
    sy, sx = _src(oh, h, align, scale), _src(ow, w, align, scale)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        y0 = min(int(np.floor(sy[i])), h - 1)
        y1, ly = min(y0 + 1, h - 1), sy[i] - y0
        for j in range(ow):
            x0 = min(int(np.floor(sx[j])), w - 1)
            x1, lx = min(x0 + 1, w - 1), sx[j] - x0
            y[:, :, i, j] = (
                (1 - ly) * (1 - lx) * x[:, :, y0, x0]
                + (1 - ly) * lx * x[:, :, y0, x1]
                + ly * (1 - lx) * x[:, :, y1, x0]
                + ly * lx * x[:, :, y1, x1]
            )
    return y


def _linear_ref(x, out, align):
    return _bilinear_ref(x[:, :, None, :], (1, out), align)[:, :, 0, :]


def _cubic(t, a=-0.75):
    t = abs(t)
    if t <= 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return 0.0


def _bicubic_ref(x, out_hw, align):
    n, c, h, w = x.shape
    oh, ow = out_hw
    sy, sx = _src(oh, h, align, clamp=False), _src(ow, w, align, clamp=False)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        by = int(np.floor(sy[i]))
        for j in range(ow):
            bx = int(np.floor(sx[j]))
            for a in range(-1, 3):
                for b in range(-1, 3):
                    wgt = _cubic(sy[i] - (by + a)) * _cubic(sx[j] - (bx + b))
                    yy, xx = min(max(by + a, 0), h - 1), min(max(bx + b, 0), w - 1)
                    y[:, :, i, j] += wgt * x[:, :, yy, xx]
    return y


def _nearest_ref(x, out_hw, exact=False):
    h, w = x.shape[2:]
    oh, ow = out_hw

    def idx(out, size):
        r = np.float32(size / out)
        d = np.arange(out, dtype=np.float32)
        s = np.floor((d + np.float32(0.5)) * r) if exact else np.floor(d * r)
        return np.minimum(s.astype(int), size - 1)

    return x[:, :, idx(oh, h)][:, :, :, idx(ow, w)]


def _area_ref(x, out_hw):
    h, w = x.shape[2:]
    oh, ow = out_hw
    y = np.zeros(x.shape[:2] + out_hw)
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -(-(i + 1) * h // oh)
            w0, w1 = (j * w) // ow, -(-(j + 1) * w // ow)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean((2, 3))
    return y


def _adaptive_max_ref(x, out_hw):
    h, w = x.shape[-2:]
    oh, ow = out_hw
    y = np.zeros(x.shape[:-2] + out_hw)
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -(-(i + 1) * h // oh)
            w0, w1 = (j * w) // ow, -(-(j + 1) * w // ow)
            y[..., i, j] = x[..., h0:h1, w0:w1].max((-2, -1))
    return y


def _pixel_shuffle_ref(x, r):
    n, c, h, w = x.shape
    y = np.zeros((n, c // (r * r), h * r, w * r))
    for ch in range(c // (r * r)):
        for i in range(h * r):
            for j in range(w * r):
                y[:, ch, i, j] = x[:, ch * r * r + (i % r) * r + (j % r), i // r, j // r]
    return y


def _pixel_unshuffle_ref(x, r):
    n, c, h, w = x.shape
    y = np.zeros((n, c * r * r, h // r, w // r))
    for ch in range(c * r * r):
        base, off = divmod(ch, r * r)
        dy, dx = divmod(off, r)
        y[:, ch] = x[:, base, dy::r, dx::r]
    return y


def _bag_ref(mode, weight_rows, bags, psw=None):
    out = []
    for k, rows in enumerate(bags):
        if not rows:
            out.append(np.zeros(weight_rows.shape[1]))
            continue
        v = weight_rows[rows]
        if psw is not None:
            v = v * psw[k][:, None]
        out.append({"sum": v.sum(0), "mean": v.mean(0), "max": v.max(0)}[mode])
    return np.stack(out)


IMG = (2, 3, 4, 5)
_IDX = np.array([1, 4, 2, 2, 0, 3, 4])
_OFF = np.array([0, 3, 3, 5])  # bags [1 4 2], [], [2 0], [3 4]
_BAGS = [[1, 4, 2], [], [2, 0], [3, 4]]
_W = np.random.default_rng(9).standard_normal((5, 3))  # distinct values: no ties in max


def _bag(mode, **kw):
    return lambda w: F.embedding_bag(dg.tensor(_IDX), w, dg.tensor(_OFF), mode=mode, **kw)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


CASES = [
    OpCase(
        "interpolate_nearest_x2",
        lambda x: F.interpolate(x, scale_factor=2),
        lambda x: _nearest_ref(x, (8, 10)),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_nearest_size",
        lambda x: F.interpolate(x, size=(7, 3)),
        lambda x: _nearest_ref(x, (7, 3)),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_nearest_exact",
        lambda x: F.interpolate(x, size=(6, 8), mode="nearest-exact"),
        lambda x: _nearest_ref(x, (6, 8), exact=True),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_bilinear",
        lambda x: F.interpolate(x, size=(7, 3), mode="bilinear"),
        lambda x: _bilinear_ref(x, (7, 3), False),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_bilinear_scale",
        lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear"),
        lambda x: _bilinear_ref(x, (6, 7), False, scale=1.5),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_bilinear_align_corners",
        lambda x: F.interpolate(x, size=(8, 9), mode="bilinear", align_corners=True),
        lambda x: _bilinear_ref(x, (8, 9), True),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_linear",
        lambda x: F.interpolate(x, size=9, mode="linear"),
        lambda x: _linear_ref(x, 9, False),
        (Float((2, 3, 5)),),
    ),
    OpCase(
        "interpolate_bicubic",
        lambda x: F.interpolate(x, size=(6, 9), mode="bicubic"),
        lambda x: _bicubic_ref(x, (6, 9), False),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_bicubic_align_corners",
        lambda x: F.interpolate(x, size=(3, 7), mode="bicubic", align_corners=True),
        lambda x: _bicubic_ref(x, (3, 7), True),
        (Float(IMG),),
    ),
    OpCase(
        "interpolate_area",
        lambda x: F.interpolate(x, size=(3, 2), mode="area"),
        lambda x: _area_ref(x, (3, 2)),
        (Float(IMG),),
        double=False,
    ),
    OpCase(
        "pixel_shuffle",
        lambda x: F.pixel_shuffle(x, 2),
        lambda x: _pixel_shuffle_ref(x, 2),
        (Float((2, 8, 3, 2)),),
    ),
    OpCase(
        "pixel_unshuffle",
        lambda x: F.pixel_unshuffle(x, 2),
        lambda x: _pixel_unshuffle_ref(x, 2),
        (Float((2, 2, 4, 6)),),
    ),
    OpCase(
        "channel_shuffle",
        lambda x: F.channel_shuffle(x, 2),
        lambda x: x.reshape(2, 2, 3, 5).transpose(0, 2, 1, 3).reshape(2, 6, 5),
        (Float((2, 6, 5)),),
    ),
    OpCase(
        "adaptive_max_pool2d",
        lambda x: F.adaptive_max_pool2d(x, (3, 2)),
        lambda x: _adaptive_max_ref(x, (3, 2)),
        (Float((2, 3, 5, 7)),),
        double=False,
    ),
    OpCase(
        "adaptive_max_pool1d_unbatched",
        lambda x: F.adaptive_max_pool1d(x, 4),
        lambda x: _adaptive_max_ref(x[:, None, :], (1, 4))[:, 0, :],
        (Float((3, 7)),),
        double=False,
    ),
    OpCase(
        "embedding_bag_sum",
        _bag("sum"),
        lambda w: _bag_ref("sum", w, _BAGS),
        (Fixed(_W),),
        double=False,
    ),
    OpCase(
        "embedding_bag_mean",
        _bag("mean"),
        lambda w: _bag_ref("mean", w, _BAGS),
        (Fixed(_W),),
        double=False,
    ),
    OpCase(
        "embedding_bag_max",
        _bag("max"),
        lambda w: _bag_ref("max", w, _BAGS),
        (Fixed(_W),),
        double=False,
    ),
    OpCase(
        "embedding_bag_2d_padding_idx",
        lambda w: F.embedding_bag(dg.tensor(np.array([[1, 2, 0], [0, 3, 3]])), w, padding_idx=0),
        lambda w: _bag_ref("mean", w, [[1, 2], [3, 3]]),
        (Fixed(_W),),
        double=False,
    ),
    OpCase(
        "embedding_bag_per_sample_weights",
        lambda w, p: F.embedding_bag(
            dg.tensor(_IDX), w, dg.tensor(_OFF), mode="sum", per_sample_weights=p
        ),
        lambda w, p: _bag_ref("sum", w, _BAGS, [p[0:3], p[3:3], p[3:5], p[5:7]]),
        (Fixed(_W), Float((7,))),
        double=False,
    ),
    OpCase(
        "rrelu_eval",
        lambda x: F.rrelu(x, 0.1, 0.3),
        lambda x: np.where(x >= 0, x, 0.2 * x),
        (Float((3, 4), away_from=0.0),),
    ),
    OpCase(
        "cosine_embedding_loss",
        lambda a, b, y: F.cosine_embedding_loss(a, b, y, margin=0.1),
        lambda a, b, y: np.mean(
            np.where(
                y == 1,
                1 - (a * b).sum(1) / np.sqrt(((a * a).sum(1) + 1e-12) * ((b * b).sum(1) + 1e-12)),
                np.maximum(
                    (a * b).sum(1) / np.sqrt(((a * a).sum(1) + 1e-12) * ((b * b).sum(1) + 1e-12))
                    - 0.1,
                    0,
                ),
            )
        ),
        (Float((4, 5)), Float((4, 5)), Fixed(np.array([1, -1, -1, 1]), grad=False)),
    ),
    OpCase(
        "margin_ranking_loss",
        lambda a, b, y: F.margin_ranking_loss(a, b, y, margin=0.2, reduction="sum"),
        lambda a, b, y: np.maximum(-y * (a - b) + 0.2, 0).sum(),
        (Float((6,)), Float((6,)), Fixed(np.array([1.0, -1, 1, -1, 1, 1]), grad=False)),
    ),
    OpCase(
        "hinge_embedding_loss",
        lambda x, y: F.hinge_embedding_loss(x, y, margin=1.5, reduction="none"),
        lambda x, y: np.where(y == 1, x, np.maximum(1.5 - x, 0)),
        (Float((6,), away_from=1.5, gap=0.1), Fixed(np.array([1.0, -1, 1, -1, 1, -1]), grad=False)),
    ),
    OpCase(
        "soft_margin_loss",
        F.soft_margin_loss,
        lambda x, y: np.log1p(np.exp(-y * x)).mean(),
        (Float((5,)), Fixed(np.array([1.0, -1, 1, -1, 1]), grad=False)),
    ),
    OpCase(
        "triplet_margin_loss_swap",
        lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=0.5, swap=True),
        lambda a, p, n: np.maximum(
            np.linalg.norm(a - p + 1e-6, axis=1)
            - np.minimum(np.linalg.norm(a - n + 1e-6, axis=1), np.linalg.norm(p - n + 1e-6, axis=1))
            + 0.5,
            0,
        ).mean(),
        (Float((4, 3)), Float((4, 3)), Float((4, 3))),
    ),
    OpCase(
        "poisson_nll_loss_full",
        lambda x, t: F.poisson_nll_loss(x, t, full=True),
        lambda x, t: np.mean(
            np.exp(x)
            - t * x
            + np.where(
                t > 1,
                t * np.log(np.maximum(t, 1)) - t + 0.5 * np.log(2 * math.pi * np.maximum(t, 1)),
                0,
            )
        ),
        (Float((5,)), Fixed(np.array([0.0, 1, 2, 3, 5]), grad=False)),
    ),
    OpCase(
        "gaussian_nll_loss",
        lambda x, t, v: F.gaussian_nll_loss(x, t, v, full=True),
        lambda x, t, v: np.mean(0.5 * (np.log(v) + (x - t) ** 2 / v) + 0.5 * np.log(2 * math.pi)),
        (Float((4, 3)), Float((4, 3)), Float((4, 3), 0.5, 2.0)),
    ),
    OpCase(
        "multilabel_soft_margin_loss",
        F.multilabel_soft_margin_loss,
        lambda x, y: np.mean(-(y * np.log(_sigmoid(x)) + (1 - y) * np.log(_sigmoid(-x))).mean(1)),
        (Float((3, 4)), Fixed(np.array([[1.0, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 0]]), grad=False)),
    ),
]

globals().update(make_tests(CASES))


@pytest.mark.parametrize(
    "rows",
    [
        np.random.default_rng(0).integers(0, 40, 300),  # token ids: a few repeats each
        np.arange(17),  # all distinct
        np.full(200, 5),  # one row repeated beyond the rounds (add.at itself)
        np.array([3, -1, 39, 3, -1]),  # negative indices alias rows (add.at itself)
        np.zeros(0, dtype=np.int64),
    ],
)
def test_embedding_scatter_add_is_add_at_bit_for_bit(rows):
    from distgrad.ops.embedding import _scatter_add_rows

    values = np.random.default_rng(1).standard_normal((rows.size, 7)).astype(np.float32)
    want = np.zeros((40, 7), np.float32)
    np.add.at(want, rows, values)
    got = np.zeros((40, 7), np.float32)
    _scatter_add_rows(np, got, rows, values)
    np.testing.assert_array_equal(got, want)
