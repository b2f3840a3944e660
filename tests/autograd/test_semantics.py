"""Tensor semantics: dtypes and promotion, devices, factories, seeding, conversion."""

import numpy as np
import pytest

import distgrad as dg


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (dg.float32, dg.float64, dg.float64),
        (dg.int64, dg.float32, dg.float32),
        (dg.int32, dg.int64, dg.int64),
        (dg.bool, dg.int32, dg.int32),
        (dg.float16, dg.float32, dg.float32),
    ],
)
def test_tensor_tensor_promotion(a, b, expected):
    x = dg.ones(2, dtype=a)
    y = dg.ones(2, dtype=b)
    assert (x + y).dtype is expected
    assert (y * x).dtype is expected


def test_scalar_promotion_follows_pytorch():
    assert (dg.ones(2, dtype=dg.float32) * 2.5).dtype is dg.float32
    assert (dg.ones(2, dtype=dg.int64) * 2.5).dtype is dg.float32
    assert (dg.ones(2, dtype=dg.int32) + 1).dtype is dg.int32
    assert (dg.ones(2, dtype=dg.float16) + 1.0).dtype is dg.float16
    assert (dg.ones(2, dtype=dg.int64) / 2).dtype is dg.float32
    # a 0-d tensor does not widen a dimensioned one of the same category
    assert (dg.ones(2, dtype=dg.float32) + dg.tensor(1.0, dtype=dg.float64)).dtype is dg.float32


def test_mixed_dtype_gradients_flow_back_in_each_dtype():
    a = dg.ones(2, dtype=dg.float32, requires_grad=True)
    b = dg.ones(2, dtype=dg.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype is dg.float32 and b.grad.dtype is dg.float64


def test_default_dtype_and_factories():
    assert dg.tensor([1.0]).dtype is dg.float32
    assert dg.tensor([1]).dtype is dg.int64
    assert dg.tensor([True]).dtype is dg.bool
    assert dg.zeros(2, 3).shape == (2, 3) and dg.zeros((2, 3)).dtype is dg.float32
    assert dg.arange(5).dtype is dg.int64 and dg.arange(0.0, 1.0, 0.25).shape == (4,)
    assert dg.full((2,), 7).dtype is dg.int64
    np.testing.assert_allclose(dg.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    np.testing.assert_allclose(dg.eye(3).numpy(), np.eye(3))
    x = dg.randn(3, 4)
    assert dg.zeros_like(x).shape == (3, 4) and dg.ones_like(x).dtype is dg.float32
    r = dg.randint(0, 10, (100,))
    assert r.dtype is dg.int64 and 0 <= r.numpy().min() and r.numpy().max() < 10


def test_manual_seed_is_reproducible():
    dg.manual_seed(123)
    a = dg.randn(5).numpy().copy()
    dg.manual_seed(123)
    b = dg.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    g = dg.Generator().manual_seed(7)
    c = dg.rand(3, generator=g).numpy().copy()
    g.manual_seed(7)
    np.testing.assert_array_equal(c, dg.rand(3, generator=g).numpy())


def test_from_numpy_shares_memory():
    arr = np.zeros(3, dtype=np.float32)
    t = dg.from_numpy(arr)
    arr[0] = 5
    assert t[0].item() == 5
    assert t.array is arr


def test_item_tolist_numpy_and_python_conversions():
    t = dg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert dg.tensor(2.5).item() == 2.5 and float(dg.tensor([3.0])) == 3.0
    with pytest.raises(RuntimeError, match="4 elements cannot be converted to Scalar"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)


def test_to_dtype_is_differentiable():
    x = dg.tensor([1.0, 2.0], dtype=dg.float32, requires_grad=True)
    y = x.to(dg.float64) * 2
    assert y.dtype is dg.float64
    y.sum().backward()
    assert x.grad.dtype is dg.float32
    np.testing.assert_allclose(x.grad.numpy(), [2, 2])


def test_comparisons_and_operators():
    a = dg.tensor([1.0, 2.0, 3.0])
    assert (a > 1.5).tolist() == [False, True, True]
    assert (a == dg.tensor([1.0, 0.0, 3.0])).tolist() == [True, False, True]
    assert (2 - a).tolist() == [1.0, 0.0, -1.0]
    assert (6 / a).tolist() == [6.0, 3.0, 2.0]
    assert (2 ** dg.tensor([1.0, 2.0])).tolist() == [2.0, 4.0]
    assert (dg.tensor([7, -7]) // 2).tolist() == [3, -4]
    assert (dg.tensor([7.0, -7.0]) % 3).tolist() == [1.0, 2.0]


def test_cuda_unavailable_says_why():
    if dg.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cupy|CUDA"):
        dg.zeros(2, device="cuda")


def test_inplace_arithmetic_result_type_checked():
    x = dg.tensor([1, 2])
    with pytest.raises(Exception, match="can't be cast|Cannot cast"):
        x.add_(1.5)


def test_repr():
    assert repr(dg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "requires_grad=True" in repr(dg.tensor([1.0], requires_grad=True))
    assert "grad_fn=<MulBackward>" in repr(dg.tensor([1.0], requires_grad=True) * 2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: dg.randperm(-1), "randperm: n must be non-negative, got -1"),
        (lambda: dg.zeros(2).to("tpu"), "unknown device type 'tpu'"),
        (
            lambda: dg.zeros(2, 3).copy_(dg.zeros(4)),
            r"copy_: the size of tensor a \(4\) must match the size of tensor b \(3\)",
        ),
        (
            lambda: dg.zeros(3).copy_(dg.ones(2, 3)),
            r"copy_: output with shape \[3\] doesn't match the broadcast shape \[2, 3\]",
        ),
        (
            lambda: dg.where(dg.zeros(2) > 0, dg.zeros(3), dg.zeros(2)),
            r"where: the size of tensor a \(2\) must match the size of tensor b \(3\)",
        ),
        (
            lambda: dg.nn.functional.mse_loss(dg.zeros(2, 3), dg.zeros(4)),
            r"mse_loss: the size of tensor a \(3\) must match the size of tensor b \(4\)",
        ),
    ],
)
def test_bad_shapes_and_arguments_are_named(call, message):
    with pytest.raises((RuntimeError, ValueError), match=message):
        call()


def test_copy_broadcasts_and_to_accepts_dtype_names():
    x = dg.zeros(2, 3)
    x.copy_(dg.tensor([1.0, 2.0, 3.0]))
    assert x.tolist() == [[1, 2, 3], [1, 2, 3]]
    assert x.to("float64").dtype is dg.float64 and x.to("cpu", dg.float64).dtype is dg.float64
