import math

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F
from tests.ops.harness import Fixed, Float, OpCase, make_tests

S = (3, 4)
_erf = np.vectorize(math.erf)


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * (np.exp(x) - 1))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


# values kept away from the kinks of the piecewise-linear activations
_AROUND_ONE = Fixed([[-1.7, -1.2, -0.8, 0.3], [0.9, 1.1, 1.6, -0.05], [0.5, -0.5, 2.0, -2.0]])
_AROUND_3 = Fixed([[-4.0, -3.2, -2.8, -1.0], [0.0, 1.5, 2.9, 3.1], [4.0, -0.4, 0.7, 6.5]])

CASES = [
    OpCase("relu", F.relu, lambda x: np.maximum(x, 0), (Float(S, away_from=0.0),)),
    OpCase(
        "relu_method_0d", lambda x: x.relu(), lambda x: np.maximum(x, 0), (Float((), 0.1, 2.0),)
    ),
    OpCase(
        "relu_toplevel", dg.relu, lambda x: np.maximum(x, 0), (Float((2, 3, 2), away_from=0.0),)
    ),
    OpCase(
        "leaky_relu",
        F.leaky_relu,
        lambda x: np.where(x > 0, x, 0.01 * x),
        (Float(S, away_from=0.0),),
    ),
    OpCase(
        "leaky_relu_slope",
        lambda x: F.leaky_relu(x, 0.2),
        lambda x: np.where(x > 0, x, 0.2 * x),
        (Float(S, away_from=0.0),),
    ),
    OpCase("elu", F.elu, _elu, (Float(S, away_from=0.0),)),
    OpCase(
        "elu_alpha", lambda x: F.elu(x, 0.5), lambda x: _elu(x, 0.5), (Float(S, away_from=0.0),)
    ),
    OpCase(
        "selu",
        F.selu,
        lambda x: 1.0507009873554805 * _elu(x, 1.6732632423543772),
        (Float(S, away_from=0.0),),
    ),
    OpCase(
        "celu",
        lambda x: F.celu(x, 2.0),
        lambda x: np.maximum(x, 0) + np.minimum(0, 2.0 * (np.exp(x / 2.0) - 1)),
        (Float(S, away_from=0.0),),
    ),
    OpCase("gelu", F.gelu, lambda x: x * 0.5 * (1 + _erf(x / math.sqrt(2))), (Float(S, -4, 4),)),
    OpCase("gelu_0d", F.gelu, lambda x: x * 0.5 * (1 + _erf(x / math.sqrt(2))), (Float(()),)),
    OpCase(
        "gelu_tanh",
        lambda x: F.gelu(x, approximate="tanh"),
        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
        (Float(S, -4, 4),),
    ),
    OpCase("silu", F.silu, lambda x: x * _sigmoid(x), (Float(S, -6, 6),)),
    OpCase("mish", F.mish, lambda x: x * np.tanh(_softplus(x)), (Float(S, -5, 5),)),
    OpCase("softplus", F.softplus, _softplus, (Float(S, -5, 5),)),
    OpCase(
        "softplus_beta_threshold",
        lambda x: F.softplus(x, beta=2.0, threshold=3.0),
        lambda x: np.where(2 * x > 3, x, _softplus(2 * x) / 2),
        (Float(S, -3, 3, away_from=1.5),),
    ),
    OpCase("hardtanh", F.hardtanh, lambda x: np.clip(x, -1, 1), (_AROUND_ONE,)),
    OpCase(
        "hardtanh_bounds",
        lambda x: F.hardtanh(x, -0.6, 1.4),
        lambda x: np.clip(x, -0.6, 1.4),
        (_AROUND_ONE,),
    ),
    OpCase("relu6", F.relu6, lambda x: np.clip(x, 0, 6), (Fixed([-1.0, 0.5, 3.0, 5.9, 6.2, 9.0]),)),
    OpCase("hardsigmoid", F.hardsigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1), (_AROUND_3,)),
    OpCase("hardswish", F.hardswish, lambda x: x * np.clip(x + 3, 0, 6) / 6, (_AROUND_3,)),
    OpCase("logsigmoid", F.logsigmoid, lambda x: np.log(_sigmoid(x)), (Float(S, -8, 8),)),
    OpCase("softsign", F.softsign, lambda x: x / (1 + np.abs(x)), (Float(S, away_from=0.0),)),
    OpCase("tanhshrink", F.tanhshrink, lambda x: x - np.tanh(x), (Float(S),)),
    OpCase(
        "threshold",
        lambda x: F.threshold(x, 0.3, -2.0),
        lambda x: np.where(x > 0.3, x, -2.0),
        (Float(S, away_from=0.3),),
    ),
    OpCase(
        "hardshrink",
        lambda x: x.hardshrink(0.7),
        lambda x: np.where(np.abs(x) > 0.7, x, 0),
        (_AROUND_ONE,),
    ),
    OpCase(
        "softshrink",
        lambda x: F.softshrink(x, 0.7),
        lambda x: np.where(x > 0.7, x - 0.7, np.where(x < -0.7, x + 0.7, 0)),
        (_AROUND_ONE,),
    ),
    OpCase(
        "prelu_channels",
        F.prelu,
        lambda x, w: np.where(x > 0, x, w.reshape(1, 3, 1) * x),
        (Float((2, 3, 4), away_from=0.0), Float((3,), 0.1, 0.5)),
    ),
    OpCase(
        "prelu_single",
        F.prelu,
        lambda x, w: np.where(x > 0, x, w * x),
        (Float(S, away_from=0.0), Float((1,), 0.1, 0.5)),
    ),
    OpCase("erf", dg.erf, _erf, (Float((2, 5), -4, 4),)),
    OpCase("erf_method_0d", lambda x: x.erf(), _erf, (Float((), -1, 1),)),
    OpCase("sigmoid_reexport", F.sigmoid, _sigmoid, (Float(S),)),
    OpCase("tanh_reexport", F.tanh, np.tanh, (Float(S),)),
]

globals().update(make_tests(CASES))


def test_erf_matches_math_erf_to_double_precision():
    x = np.concatenate(
        [np.linspace(-7, 7, 20001), [0.0, 1e-300, 0.84375, 1.25, 1 / 0.35, 6.0, np.inf, -np.inf]]
    )
    got = dg.erf(dg.tensor(x, dtype=dg.float64)).numpy()
    np.testing.assert_allclose(got, _erf(x), rtol=4e-16, atol=2e-16)
    assert np.isnan(dg.erf(dg.tensor([np.nan])).numpy()).all()
    assert np.signbit(dg.erf(dg.tensor(-0.0, dtype=dg.float64)).item())


def test_extreme_inputs_do_not_overflow():
    x = dg.tensor([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dg.float64, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        outs = [
            F.silu(x),
            F.mish(x),
            F.softplus(x),
            F.logsigmoid(x),
            F.gelu(x),
            F.elu(x),
            F.selu(x),
            F.celu(x),
        ]
        for out in outs:
            out.sum().backward()
            assert np.isfinite(out.detach().numpy()).all()
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(
        F.logsigmoid(x).detach().numpy(), [-1000, -50, -math.log(2), -math.exp(-50), 0], rtol=1e-12
    )


def test_boundary_gradients_follow_pytorch():
    x = dg.tensor([-1.0, 1.0, 0.0, 6.0], requires_grad=True)
    F.hardtanh(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 1, 0])  # zero on the bounds
    x.grad = None
    F.relu6(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 0, 0])
    x.grad = None
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 0, 1])


@pytest.mark.parametrize(
    "fn,ref",
    [
        (lambda x, inplace: F.relu(x, inplace=inplace), lambda x: np.maximum(x, 0)),
        (lambda x, inplace: F.leaky_relu(x, 0.1, inplace), lambda x: np.where(x > 0, x, 0.1 * x)),
        (lambda x, inplace: F.elu(x, inplace=inplace), _elu),
        (lambda x, inplace: F.hardtanh(x, inplace=inplace), lambda x: np.clip(x, -1, 1)),
        (lambda x, inplace: F.silu(x, inplace=inplace), lambda x: x * _sigmoid(x)),
        (lambda x, inplace: F.threshold(x, 0.1, 5.0, inplace), lambda x: np.where(x > 0.1, x, 5.0)),
    ],
)
def test_inplace_matches_out_of_place_with_gradients(fn, ref):
    data = np.random.default_rng(1).uniform(-2, 2, (3, 5))
    leaf = dg.tensor(data, dtype=dg.float64, requires_grad=True)
    y = leaf * 2  # a non-leaf, changed in place
    out = fn(y, True)
    assert out is y
    np.testing.assert_allclose(y.detach().numpy(), ref(2 * data))
    out.sum().backward()
    leaf2 = dg.tensor(data, dtype=dg.float64, requires_grad=True)
    fn(leaf2 * 2, False).sum().backward()
    np.testing.assert_allclose(leaf.grad.numpy(), leaf2.grad.numpy())


def test_inplace_without_grad_and_method_forms():
    x = dg.tensor([-1.0, 2.0])
    assert x.relu_() is x
    np.testing.assert_array_equal(x.numpy(), [0, 2])
    y = dg.tensor([-1.0, 2.0])
    dg.selu_(y)
    np.testing.assert_allclose(
        y.numpy(),
        [1.0507009873554805 * 1.6732632423543772 * (math.exp(-1) - 1), 2 * 1.0507009873554805],
        rtol=1e-6,
    )
    z = dg.tensor([0.5])
    z.erf_()
    np.testing.assert_allclose(z.numpy(), [math.erf(0.5)], rtol=1e-6)


def test_inplace_on_leaf_requiring_grad_raises():
    x = dg.tensor([1.0, -1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        F.relu(x, inplace=True)


def test_relu_keeps_integer_dtype_and_others_promote():
    assert F.relu(dg.tensor([-1, 2])).dtype == dg.int64
    assert F.gelu(dg.tensor([-1, 2])).dtype == dg.float32
    assert F.silu(dg.tensor([1.0], dtype=dg.float64)).dtype == dg.float64


def test_bad_arguments():
    x = dg.randn(2, 3)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="fast")
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(x, 1.0, -1.0)
    with pytest.raises(RuntimeError, match=r"prelu: weight of shape \[2\]"):
        F.prelu(x, dg.ones(2))


@pytest.mark.parametrize("shape", [(2, 4096), (64, 6, 8), (3, 5), (7, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_relu_rows_path_matches_maximum_with_nan_and_views(shape, dtype):
    # contiguous arrays whose size shares a large factor with 4096 take the row-of-zeros path
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 5).astype(dtype)
    if dtype != np.int32:
        a.reshape(-1)[::7] = np.nan
    expect = np.maximum(a, 0)
    np.testing.assert_array_equal(F.relu(dg.tensor(a)).numpy(), expect)
    x = dg.tensor(a.copy())
    F.relu(x, inplace=True)
    np.testing.assert_array_equal(x.numpy(), expect)
    view = dg.tensor(a.copy()).transpose(0, -1)  # not contiguous: the scalar path
    np.testing.assert_array_equal(F.relu(view).numpy(), expect.swapaxes(0, -1))
