import numpy as np
import pytest

import distgrad as dg
from distgrad.ops import normalization as Nm
from tests.ops.harness import Float, OpCase, make_tests


# ---- numpy references --------------------------------------------------------------------------
def _channel(p, ndim):
    return p.reshape((1, -1) + (1,) * (ndim - 2))


def _standardise(x, axes, eps):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def _affine(y, w, b, ndim):
    if w is not None:
        y = y * _channel(w, ndim)
    return y if b is None else y + _channel(b, ndim)


def ref_batch_norm(x, w=None, b=None, eps=1e-5):
    return _affine(_standardise(x, (0,) + tuple(range(2, x.ndim)), eps), w, b, x.ndim)


def ref_batch_norm_eval(x, mean, var, w, b, eps=1e-5):
    return _affine(
        (x - _channel(mean, x.ndim)) / np.sqrt(_channel(var, x.ndim) + eps), w, b, x.ndim
    )


def ref_instance_norm(x, w=None, b=None, eps=1e-5):
    return _affine(_standardise(x, tuple(range(2, x.ndim)), eps), w, b, x.ndim)


def ref_layer_norm(x, k, w=None, b=None, eps=1e-5):
    y = _standardise(x, tuple(range(x.ndim - k, x.ndim)), eps)
    y = y if w is None else y * w
    return y if b is None else y + b


def ref_group_norm(x, groups, w, b, eps=1e-5):
    n = x.shape[0]
    y = _standardise(x.reshape(n, groups, -1), (2,), eps).reshape(x.shape)
    return _affine(y, w, b, x.ndim)


POS = dict(low=0.5, high=2.0, grad=False)  # running variances
CASES = [
    OpCase(
        "batch_norm_train_2d",
        lambda x, w, b: Nm.batch_norm(x, None, None, w, b, True),
        ref_batch_norm,
        (Float((5, 3)), Float((3,)), Float((3,))),
    ),
    OpCase(
        "batch_norm_train_4d",
        lambda x, w, b: Nm.batch_norm(x, None, None, w, b, True, eps=1e-3),
        lambda x, w, b: ref_batch_norm(x, w, b, 1e-3),
        (Float((2, 3, 2, 3)), Float((3,)), Float((3,))),
    ),
    OpCase(
        "batch_norm_train_3d_no_affine",
        lambda x: Nm.batch_norm(x, None, None, training=True),
        ref_batch_norm,
        (Float((3, 2, 4)),),
    ),
    OpCase(
        "batch_norm_eval",
        lambda x, m, v, w, b: Nm.batch_norm(x, m, v, w, b, False),
        ref_batch_norm_eval,
        (
            Float((3, 2, 2, 2)),
            Float((2,), grad=False),
            Float((2,), **POS),
            Float((2,)),
            Float((2,)),
        ),
    ),
    OpCase(
        "instance_norm",
        lambda x, w, b: Nm.instance_norm(x, weight=w, bias=b),
        ref_instance_norm,
        (Float((2, 3, 2, 3)), Float((3,)), Float((3,))),
    ),
    OpCase(
        "instance_norm_running_stats",
        lambda x, m, v: Nm.instance_norm(x, m, v, use_input_stats=False),
        lambda x, m, v: ref_batch_norm_eval(x, m, v, None, None),
        (Float((2, 3, 4)), Float((3,), grad=False), Float((3,), **POS)),
    ),
    OpCase(
        "layer_norm_last",
        lambda x, w, b: Nm.layer_norm(x, 4, w, b),
        lambda x, w, b: ref_layer_norm(x, 1, w, b),
        (Float((3, 4)), Float((4,)), Float((4,))),
    ),
    OpCase(
        "layer_norm_last_two",
        lambda x, w, b: Nm.layer_norm(x, (3, 4), w, b, eps=1e-4),
        lambda x, w, b: ref_layer_norm(x, 2, w, b, 1e-4),
        (Float((2, 3, 4)), Float((3, 4)), Float((3, 4))),
    ),
    OpCase(
        "layer_norm_no_affine",
        lambda x: Nm.layer_norm(x, (2, 3)),
        lambda x: ref_layer_norm(x, 2),
        (Float((2, 2, 3)),),
    ),
    OpCase(
        "layer_norm_bias_only",
        lambda x, b: Nm.layer_norm(x, (5,), None, b),
        lambda x, b: ref_layer_norm(x, 1, None, b),
        (Float((3, 5)), Float((5,))),
    ),
    OpCase(
        "group_norm",
        lambda x, w, b: Nm.group_norm(x, 2, w, b),
        lambda x, w, b: ref_group_norm(x, 2, w, b),
        (Float((2, 4, 3)), Float((4,)), Float((4,))),
    ),
    OpCase(
        "group_norm_4d",
        lambda x, w, b: Nm.group_norm(x, 3, w, b),
        lambda x, w, b: ref_group_norm(x, 3, w, b),
        (Float((2, 6, 2, 2)), Float((6,)), Float((6,))),
    ),
]
CASES = [OpCase(c.name, c.fn, c.ref, c.inputs, double=False) for c in CASES]

globals().update(make_tests(CASES))


# ---- targeted tests ---------------------------------------------------------------------------
def _arr(*shape, low=-2.0, high=2.0):
    return np.random.default_rng(1).uniform(low, high, shape)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)])
def test_batch_norm_updates_running_stats_with_unbiased_variance(shape):
    x = _arr(*shape)
    rm0, rv0 = _arr(3), _arr(3, low=0.5)
    rm, rv = dg.tensor(rm0.copy()), dg.tensor(rv0.copy())
    versions = (rm._version_value, rv._version_value)
    Nm.batch_norm(dg.tensor(x), rm, rv, training=True, momentum=0.3)
    axes = (0,) + tuple(range(2, x.ndim))
    np.testing.assert_allclose(rm.numpy(), 0.7 * rm0 + 0.3 * x.mean(axis=axes))
    np.testing.assert_allclose(rv.numpy(), 0.7 * rv0 + 0.3 * x.var(axis=axes, ddof=1))
    assert rm._version_value > versions[0] and rv._version_value > versions[1]


def test_instance_norm_running_stats_average_the_batch():
    x = _arr(2, 3, 4)
    rm, rv = dg.tensor(np.zeros(3)), dg.tensor(np.ones(3))
    Nm.instance_norm(dg.tensor(x), rm, rv, momentum=0.5)
    np.testing.assert_allclose(rm.numpy(), 0.5 * x.mean(axis=2).mean(axis=0))
    np.testing.assert_allclose(rv.numpy(), 0.5 + 0.5 * x.var(axis=2, ddof=1).mean(axis=0))


def test_eval_mode_leaves_running_stats_and_uses_them():
    x = _arr(4, 2)
    rm, rv = dg.tensor(np.array([1.0, -1.0])), dg.tensor(np.array([4.0, 0.25]))
    y = Nm.batch_norm(dg.tensor(x), rm, rv, training=False, eps=0.0)
    np.testing.assert_allclose(y.numpy(), (x - [1.0, -1.0]) / [2.0, 0.5])
    np.testing.assert_array_equal(rm.numpy(), [1.0, -1.0])


def test_float32_stays_float32():
    x = dg.tensor(_arr(4, 3, 2).astype(np.float32))
    w = dg.tensor(np.ones(3, np.float32))
    for y in (
        Nm.batch_norm(x, None, None, w, None, True),
        Nm.layer_norm(x, 2),
        Nm.group_norm(x, 3, w),
    ):
        assert y.dtype == dg.float32


def test_bad_arguments():
    x = dg.tensor(_arr(2, 6, 4))
    with pytest.raises(
        RuntimeError,
        match=r"divisible by num_groups, but got input of shape "
        r"\[2, 6, 4\] and num_groups=4",
    ):
        Nm.group_norm(x, 4)
    with pytest.raises(
        RuntimeError,
        match=r"Given normalized_shape=\[6\], expected input with "
        r"shape \[\*, 6\], but got input of size\[2, 6, 4\]",
    ):
        Nm.layer_norm(x, 6)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        Nm.batch_norm(dg.tensor(_arr(1, 3)), None, None, training=True)
    with pytest.raises(RuntimeError, match="running_mean and running_var must be given"):
        Nm.batch_norm(x, None, None, training=False)
    with pytest.raises(RuntimeError, match=r"expected weight of shape \[6\]"):
        Nm.batch_norm(x, None, None, dg.tensor(np.ones(4)), training=True)
