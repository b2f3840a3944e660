"""Convolution, pooling and batch-norm against torch in float64: forward values, gradients of
every input, and (batch_norm) the running statistics. Skipped without torch."""

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair(shapes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    ours = [dg.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    return ours, theirs


def _check(f_ours, f_torch, shapes, seed=0, tol=1e-10):
    ours, theirs = _pair(shapes, seed)
    y, yt = f_ours(*ours), f_torch(*theirs)
    y, yt = (y[0], yt[0]) if isinstance(y, tuple) else (y, yt)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    g = np.random.default_rng(seed + 1).standard_normal(tuple(yt.shape))
    y.backward(dg.tensor(g))
    yt.backward(torch.tensor(g))
    for a, at in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), at.grad.numpy(), rtol=tol, atol=tol)


CONV = [
    ((4, 3, 9, 10), (5, 3, 3, 3), dict(padding=1)),
    ((3, 4, 8, 8), (6, 2, 3, 2), dict(padding=(1, 0), groups=2)),
    ((2, 3, 11, 9), (4, 3, 3, 3), dict(stride=2, padding=1, dilation=2)),
    ((2, 2, 7, 7), (8, 2, 5, 5), dict(padding=2)),
    ((2, 3, 6, 6), (4, 3, 1, 1), dict(padding=1)),
    ((3, 2, 7, 8), (2, 2, 4, 3), dict(padding="same")),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("x_shape,w_shape,kw", CONV)
def test_conv2d(x_shape, w_shape, kw):
    _check(
        lambda x, w, b: F.conv2d(x, w, b, **kw),
        lambda x, w, b: TF.conv2d(x, w, b, **kw),
        [x_shape, w_shape, (w_shape[0],)],
    )


def test_conv1d():
    kw = dict(stride=2, padding=2, dilation=1, groups=1)
    _check(
        lambda x, w: F.conv1d(x, w, **kw),
        lambda x, w: TF.conv1d(x, w, **kw),
        [(3, 4, 17), (5, 4, 3)],
    )


@pytest.mark.parametrize(
    "kw", [dict(stride=2, padding=1, output_padding=1), dict(stride=1, groups=2, dilation=2)]
)
def test_conv_transpose2d(kw):
    _check(
        lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
        lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw),
        [(2, 4, 5, 6), (4, 3, 3, 3), (3 * kw.get("groups", 1),)],
    )


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=2, ceil_mode=True, dilation=2),
        dict(kernel_size=(2, 3), stride=1),
    ],
)
def test_max_pool2d_with_indices(kw):
    _check(
        lambda x: F.max_pool2d(x, return_indices=True, **kw),
        lambda x: TF.max_pool2d(x, return_indices=True, **kw),
        [(3, 4, 9, 11)],
    )
    (x,), (xt,) = _pair([(3, 4, 9, 11)])
    _, idx = F.max_pool2d(x, return_indices=True, **kw)
    _, idx_t = TF.max_pool2d(xt, return_indices=True, **kw)
    np.testing.assert_array_equal(idx.numpy(), idx_t.numpy())


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    ],
)
def test_avg_pool2d(kw):
    _check(lambda x: F.avg_pool2d(x, **kw), lambda x: TF.avg_pool2d(x, **kw), [(2, 3, 9, 10)])


@pytest.mark.parametrize("size", [1, (3, 4), (5, 7)])
def test_adaptive_avg_pool2d(size):
    _check(
        lambda x: F.adaptive_avg_pool2d(x, size),
        lambda x: TF.adaptive_avg_pool2d(x, size),
        [(2, 3, 9, 10)],
    )


@pytest.mark.parametrize("shape", [(6, 4), (5, 3, 7), (4, 3, 5, 6)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training):
    c = shape[1]
    rng = np.random.default_rng(7)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    ours_stats = [dg.tensor(rm.copy()), dg.tensor(rv.copy())]
    torch_stats = [torch.tensor(rm.copy()), torch.tensor(rv.copy())]
    _check(
        lambda x, w, b: F.batch_norm(x, *ours_stats, w, b, training=training, momentum=0.3),
        lambda x, w, b: TF.batch_norm(x, *torch_stats, w, b, training=training, momentum=0.3),
        [shape, (c,), (c,)],
    )
    for a, at in zip(ours_stats, torch_stats):
        np.testing.assert_allclose(a.numpy(), at.numpy(), rtol=1e-12, atol=1e-12)


def test_batch_norm_without_affine_and_large_mean():
    _check(
        lambda x: F.batch_norm(x + 1e4, None, None, training=True),
        lambda x: TF.batch_norm(x + 1e4, None, None, training=True),
        [(8, 3, 4, 4)],
        tol=1e-8,
    )
