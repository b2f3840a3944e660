import math

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F
from tests.ops.harness import Fixed, Float, Int, OpCase, make_tests


# ---- independent numpy references (explicit loops over elements, PyTorch's formulas) -------
def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _rows(a, axis):
    """(elements, classes) view of an array with classes on ``axis``."""
    return np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])


def _reduce(losses, batch_shape, reduction, denom):
    if reduction == "none":
        return losses.reshape(batch_shape)
    return losses.sum() if reduction == "sum" else losses.sum() / denom


def ref_cross_entropy(
    x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, log_probs=False
):
    axis = 0 if x.ndim == 1 else 1
    c = x.shape[axis]
    batch = tuple(n for i, n in enumerate(x.shape) if i != axis)
    logp = _rows(x if log_probs else _log_softmax(x, axis), axis)
    w = np.ones(c) if weight is None else weight
    if np.issubdtype(np.asarray(t).dtype, np.floating):
        q = _rows(t, axis) * (1 - label_smoothing) + label_smoothing / c
        losses = np.array([-(logp[i] * q[i] * w).sum() for i in range(len(logp))])
        return _reduce(losses, batch, reduction, len(logp))
    losses = np.zeros(len(logp))
    denom = 0.0
    for i, k in enumerate(np.asarray(t).reshape(-1)):
        if k == ignore_index:
            continue
        nll = -logp[i, k] * w[k]
        smooth = -(logp[i] * w).sum() / c
        losses[i] = (1 - label_smoothing) * nll + label_smoothing * smooth
        denom += w[k]
    return _reduce(losses, batch, reduction, denom)


def ref_nll(x, t, *weight, **kw):
    return ref_cross_entropy(x, t, *weight, log_probs=True, **kw)


def _pointwise(loss):
    def ref(x, t, *extra, reduction="mean", **kw):
        values = loss(x, t, *extra, **kw)
        return (
            values if reduction == "none" else values.sum() if reduction == "sum" else values.mean()
        )

    return ref


ref_mse = _pointwise(lambda x, t: (x - t) ** 2)
ref_l1 = _pointwise(lambda x, t: np.abs(x - t))


@_pointwise
def ref_smooth_l1(x, t, beta=1.0):
    d = np.abs(x - t)
    return np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)


@_pointwise
def ref_huber(x, t, delta=1.0):
    d = np.abs(x - t)
    return np.where(d < delta, 0.5 * d**2, delta * (d - 0.5 * delta))


@_pointwise
def ref_bce(x, t, w=None):
    values = -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log(1 - x), -100))
    return values if w is None else values * w


@_pointwise
def ref_bce_logits(x, t, w=None, pos_weight=None):
    p = 1 / (1 + np.exp(-x))
    pw = 1 if pos_weight is None else pos_weight
    values = -(pw * t * np.log(p) + (1 - t) * np.log(1 - p))
    return values if w is None else values * w


def ref_kl(x, t, reduction="mean", log_target=False):
    values = np.exp(t) * (t - x) if log_target else t * (np.log(t) - x)
    if reduction == "batchmean":
        return values.sum() / x.shape[0]
    return _pointwise(lambda a, b: values)(x, t, reduction=reduction)


# ---- the table ----------------------------------------------------------------------------
W4 = Fixed([0.2, 1.0, 2.5, 0.7], grad=False)
IGNORED = Fixed([1, -100, 3, 0, -100, 2])
LOGITS = Float((6, 4), -3, 3)


def ce(**kw):
    return lambda x, t, *w: F.cross_entropy(x, t, *w, **kw)


def ce_ref(**kw):
    return lambda x, t, *w: ref_cross_entropy(x, t, *w, **kw)


CASES = [
    OpCase("ce", F.cross_entropy, ref_cross_entropy, (LOGITS, Int((6,), 4))),
    OpCase("ce_sum", ce(reduction="sum"), ce_ref(reduction="sum"), (LOGITS, Int((6,), 4))),
    OpCase("ce_none", ce(reduction="none"), ce_ref(reduction="none"), (LOGITS, Int((6,), 4))),
    OpCase("ce_weight", F.cross_entropy, ref_cross_entropy, (LOGITS, Int((6,), 4), W4)),
    OpCase("ce_ignore", F.cross_entropy, ref_cross_entropy, (LOGITS, IGNORED)),
    OpCase(
        "ce_ignore_weight_none",
        ce(reduction="none"),
        ce_ref(reduction="none"),
        (LOGITS, IGNORED, W4),
    ),
    OpCase(
        "ce_custom_ignore_index",
        ce(ignore_index=2),
        ce_ref(ignore_index=2),
        (LOGITS, Fixed([2, 1, 2, 0, 3, 3])),
    ),
    OpCase(
        "ce_smoothing", ce(label_smoothing=0.2), ce_ref(label_smoothing=0.2), (LOGITS, Int((6,), 4))
    ),
    OpCase(
        "ce_smoothing_weight_ignore",
        ce(label_smoothing=0.3),
        ce_ref(label_smoothing=0.3),
        (LOGITS, IGNORED, W4),
    ),
    OpCase(
        "ce_smoothing_none",
        ce(label_smoothing=0.1, reduction="none"),
        ce_ref(label_smoothing=0.1, reduction="none"),
        (LOGITS, IGNORED, W4),
    ),
    OpCase(
        "ce_spatial", F.cross_entropy, ref_cross_entropy, (Float((2, 3, 4, 2)), Int((2, 4, 2), 3))
    ),
    OpCase(
        "ce_spatial_smoothing_none",
        ce(label_smoothing=0.25, reduction="none"),
        ce_ref(label_smoothing=0.25, reduction="none"),
        (Float((2, 3, 4)), Int((2, 4), 3), Fixed([0.5, 1.0, 2.0], grad=False)),
    ),
    OpCase("ce_unbatched", F.cross_entropy, ref_cross_entropy, (Float((5,)), Int((), 5))),
    OpCase("ce_probs", F.cross_entropy, ref_cross_entropy, (LOGITS, Float((6, 4), 0, 1))),
    OpCase(
        "ce_probs_weight_smoothing_none",
        ce(label_smoothing=0.2, reduction="none"),
        ce_ref(label_smoothing=0.2, reduction="none"),
        (LOGITS, Float((6, 4), 0, 1), W4),
    ),
    OpCase(
        "ce_probs_spatial_sum",
        ce(reduction="sum"),
        ce_ref(reduction="sum"),
        (Float((2, 3, 4)), Float((2, 3, 4), 0, 1)),
    ),
    OpCase("nll", F.nll_loss, ref_nll, (LOGITS, Int((6,), 4))),
    OpCase("nll_weight_ignore", F.nll_loss, ref_nll, (LOGITS, IGNORED, W4)),
    OpCase(
        "nll_none",
        lambda x, t: F.nll_loss(x, t, reduction="none"),
        lambda x, t: ref_nll(x, t, reduction="none"),
        (LOGITS, IGNORED),
    ),
    OpCase(
        "nll_spatial_sum",
        lambda x, t: F.nll_loss(x, t, reduction="sum"),
        lambda x, t: ref_nll(x, t, reduction="sum"),
        (Float((2, 3, 4)), Int((2, 4), 3)),
    ),
    OpCase("mse", F.mse_loss, ref_mse, (Float((3, 4)), Float((3, 4)))),
    OpCase(
        "mse_sum",
        lambda x, t: F.mse_loss(x, t, reduction="sum"),
        lambda x, t: ref_mse(x, t, reduction="sum"),
        (Float((3, 4)), Float((3, 4))),
    ),
    OpCase(
        "mse_none_0d",
        lambda x, t: F.mse_loss(x, t, reduction="none"),
        lambda x, t: ref_mse(x, t, reduction="none"),
        (Float(()), Float(())),
    ),
    OpCase("l1", F.l1_loss, ref_l1, (Float((3, 4)), Float((3, 4)))),
    OpCase(
        "l1_none",
        lambda x, t: F.l1_loss(x, t, reduction="none"),
        lambda x, t: ref_l1(x, t, reduction="none"),
        (Float((3, 4)), Float((3, 4))),
    ),
    OpCase("smooth_l1", F.smooth_l1_loss, ref_smooth_l1, (Float((3, 4)), Float((3, 4)))),
    OpCase(
        "smooth_l1_beta",
        lambda x, t: F.smooth_l1_loss(x, t, beta=0.5, reduction="sum"),
        lambda x, t: ref_smooth_l1(x, t, beta=0.5, reduction="sum"),
        (Float((3, 4)), Float((3, 4))),
    ),
    OpCase(
        "smooth_l1_beta0",
        lambda x, t: F.smooth_l1_loss(x, t, beta=0.0),
        ref_l1,
        (Float((3, 4)), Float((3, 4))),
    ),
    OpCase("huber", F.huber_loss, ref_huber, (Float((3, 4)), Float((3, 4)))),
    OpCase(
        "huber_delta_none",
        lambda x, t: F.huber_loss(x, t, reduction="none", delta=0.7),
        lambda x, t: ref_huber(x, t, delta=0.7, reduction="none"),
        (Float((3, 4)), Float((3, 4))),
    ),
    OpCase(
        "bce", F.binary_cross_entropy, ref_bce, (Float((3, 4), 0.05, 0.95), Float((3, 4), 0, 1))
    ),
    OpCase(
        "bce_weight_none",
        lambda x, t, w: F.binary_cross_entropy(x, t, w, reduction="none"),
        lambda x, t, w: ref_bce(x, t, w, reduction="none"),
        (Float((3, 4), 0.05, 0.95), Float((3, 4), 0, 1), Float((4,), 0.5, 2, grad=False)),
    ),
    OpCase(
        "bce_logits",
        F.binary_cross_entropy_with_logits,
        ref_bce_logits,
        (Float((3, 4), -4, 4), Float((3, 4), 0, 1)),
    ),
    OpCase(
        "bce_logits_weights",
        lambda x, t, w, pw: F.binary_cross_entropy_with_logits(
            x, t, w, reduction="sum", pos_weight=pw
        ),
        lambda x, t, w, pw: ref_bce_logits(x, t, w, pw, reduction="sum"),
        (
            Float((3, 4), -4, 4),
            Float((3, 4), 0, 1),
            Float((3, 1), 0.5, 2, grad=False),
            Float((4,), 0.5, 3, grad=False),
        ),
    ),
    OpCase("kl_div", F.kl_div, ref_kl, (Float((3, 4)), Float((3, 4), 0.1, 1))),
    OpCase(
        "kl_div_batchmean",
        lambda x, t: F.kl_div(x, t, reduction="batchmean"),
        lambda x, t: ref_kl(x, t, reduction="batchmean"),
        (Float((3, 4)), Float((3, 4), 0.1, 1)),
    ),
    OpCase(
        "kl_div_log_target_none",
        lambda x, t: F.kl_div(x, t, reduction="none", log_target=True),
        lambda x, t: ref_kl(x, t, reduction="none", log_target=True),
        (Float((3, 4)), Float((3, 4))),
    ),
]

globals().update(make_tests(CASES))


# ---- targeted semantics -------------------------------------------------------------------
def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 10)).astype(np.float32)
    t = rng.integers(0, 10, 512)
    logits = dg.tensor(x, requires_grad=True)
    loss = F.cross_entropy(logits, dg.tensor(t))
    loss.backward()
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(512), t] -= 1
    assert loss.dtype == dg.float32 and logits.grad.dtype == dg.float32
    np.testing.assert_allclose(logits.grad.numpy(), p / 512, atol=1e-7)


def test_cross_entropy_is_stable_for_huge_and_infinite_logits():
    x = dg.tensor([[1e4, -1e4, 0.0], [0.0, -math.inf, 5.0]], dtype=dg.float64, requires_grad=True)
    loss = F.cross_entropy(x, dg.tensor([1, 2]), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [2e4, math.log(1 + math.exp(-5))], rtol=1e-12)
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    assert x.grad.numpy()[1, 1] == 0


def test_cross_entropy_all_ignored_mean_is_nan_like_pytorch():
    x = dg.randn(3, 4, requires_grad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = F.cross_entropy(x, dg.tensor([-100, -100, -100]))
        assert math.isnan(loss.item())
        assert F.cross_entropy(x, dg.tensor([-100, -100, -100]), reduction="sum").item() == 0


def test_legacy_size_average_and_reduce():
    x, t = dg.randn(4, 3), dg.tensor([0, 1, 2, 1])
    with pytest.warns(UserWarning, match="size_average and reduce"):
        summed = F.cross_entropy(x, t, size_average=False)
    np.testing.assert_allclose(summed.item(), F.cross_entropy(x, t, reduction="sum").item())
    with pytest.warns(UserWarning):
        assert F.mse_loss(x, x * 2, reduce=False).shape == (4, 3)


def test_regression_losses_broadcast_with_a_warning():
    x = dg.randn(3, 4, dtype=dg.float64, requires_grad=True)
    t = dg.randn(4, dtype=dg.float64, requires_grad=True)
    with pytest.warns(
        UserWarning,
        match=r"target size \(\[4\]\) that is different to the input "
        r"size \(\[3, 4\]\)",
    ):
        loss = F.mse_loss(x, t)
    np.testing.assert_allclose(loss.item(), ref_mse(x.detach().numpy(), t.detach().numpy()))
    loss.backward()
    assert t.grad.shape == (4,)
    np.testing.assert_allclose(
        t.grad.numpy(), -2 * (x.detach().numpy() - t.detach().numpy()).sum(0) / 12
    )


def test_cross_entropy_target_out_of_range_names_value_and_classes():
    x = dg.randn(3, 5)
    with pytest.raises(IndexError, match="target 7 is out of bounds for 5 classes"):
        F.cross_entropy(x, dg.tensor([0, 7, 1]))
    with pytest.raises(IndexError, match="target -3 is out of bounds"):
        F.nll_loss(x, dg.tensor([0, -3, 1]))


def test_cross_entropy_shape_and_dtype_errors_name_both_shapes():
    x = dg.randn(3, 5)
    with pytest.raises(
        ValueError,
        match=r"expected target of shape \[3\] for input of shape "
        r"\[3, 5\].*got target of shape \[4\]",
    ):
        F.cross_entropy(x, dg.tensor([0, 1, 2, 3]))
    with pytest.raises(
        RuntimeError,
        match=r"class indices.*class probabilities.*got a "
        r"distgrad.float32 target of shape \[3\]",
    ):
        F.cross_entropy(x, dg.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(
        RuntimeError,
        match=r"weight tensor should be defined either for all 5 "
        r"classes",
    ):
        F.cross_entropy(x, dg.tensor([0, 1, 2]), weight=dg.ones(4))
    with pytest.raises(TypeError, match="floating-point input"):
        F.cross_entropy(dg.tensor([[1, 2]]), dg.tensor([0]))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(x, dg.tensor([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction|avg is not"):
        F.cross_entropy(x, dg.tensor([0, 1, 2]), reduction="avg")


def test_binary_cross_entropy_checks():
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(dg.tensor([0.5, 1.5]), dg.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target size \(\[2, 1\]\).*input size \(\[2\]\)"):
        F.binary_cross_entropy_with_logits(dg.tensor([0.5, 1.5]), dg.tensor([[0.0], [1.0]]))
    # log clamped at -100 as in PyTorch: p = 0 with target 1 costs 100, not inf
    assert F.binary_cross_entropy(dg.tensor([0.0]), dg.tensor([1.0])).item() == 100


def test_bce_with_logits_is_stable_for_large_logits():
    x = dg.tensor([-500.0, 500.0], dtype=dg.float64, requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(
        x, dg.tensor([1.0, 0.0], dtype=dg.float64), reduction="none"
    )
    np.testing.assert_allclose(loss.detach().numpy(), [500, 500])
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1, 1])
