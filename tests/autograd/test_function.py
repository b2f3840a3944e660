"""Custom autograd Functions: the PyTorch API on tensors."""

import numpy as np
import pytest

import distgrad as dg
from distgrad.autograd import Function, gradcheck


class Swish(Function):
    @staticmethod
    def forward(ctx, x, beta):
        s = dg.sigmoid(beta * x)
        ctx.save_for_backward(x, s)
        ctx.beta = beta
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved_tensors
        b = ctx.beta
        return grad * (s + b * x * s * (1 - s)), None


def test_custom_function_gradcheck():
    x = dg.randn(5, dtype=dg.float64, requires_grad=True)
    assert gradcheck(lambda t: Swish.apply(t, 1.7), (x,))
    y = Swish.apply(x, 1.7)
    assert y.grad_fn.name() == "SwishBackward"


def test_needs_input_grad_and_non_tensor_args():
    seen = {}

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen["needs"] = ctx.needs_input_grad
            ctx.save_for_backward(a, b)
            return a * b * k

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a, None

    a = dg.tensor([2.0], requires_grad=True)
    b = dg.tensor([3.0])
    Mul.apply(a, b, 2).sum().backward()
    assert seen["needs"] == (True, False, False)
    assert a.grad.item() == 3.0


def test_mark_dirty_inplace_function():
    class AddOneInplace(Function):
        @staticmethod
        def forward(ctx, x):
            x.add_(1)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    a = dg.tensor([1.0, 2.0], requires_grad=True)
    b = a * 2
    out = AddOneInplace.apply(b)
    assert out is b and b._version_value >= 1 and b.grad_fn.name() == "AddOneInplaceBackward"
    np.testing.assert_allclose(b.detach().numpy(), [3, 5])
    b.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2, 2])


def test_mark_non_differentiable():
    class SortWithIndex(Function):
        @staticmethod
        def forward(ctx, x):
            idx = dg.tensor(np.argsort(x.numpy()))
            ctx.mark_non_differentiable(idx)
            ctx.save_for_backward(idx)
            return x[idx], idx

        @staticmethod
        def backward(ctx, g, _):
            (idx,) = ctx.saved_tensors
            out = dg.zeros_like(g)
            out[idx] = g
            return out

    x = dg.tensor([3.0, 1.0, 2.0], requires_grad=True)
    values, idx = SortWithIndex.apply(x)
    assert values.requires_grad and not idx.requires_grad
    (values * dg.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3, 1, 2])


def test_wrong_number_of_gradients_raises():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g, g

    x = dg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Bad.apply(x).sum().backward()


def test_wrong_gradient_shape_raises():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return dg.ones(3)

    x = dg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(
        RuntimeError,
        match=r"invalid gradient at index 0 - got \[3\] but "
        r"expected shape compatible with \[2\]",
    ):
        Bad.apply(x).sum().backward()


def test_custom_function_double_backward():
    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x**2

    x = dg.tensor([2.0], dtype=dg.float64, requires_grad=True)
    (g,) = dg.autograd.grad(Cube.apply(x).sum(), x, create_graph=True)
    (gg,) = dg.autograd.grad(g.sum(), x)
    assert gg.item() == pytest.approx(12.0)


def test_once_differentiable_custom_function_under_create_graph():
    class Square(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @dg.autograd.once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            assert isinstance(g, dg.Tensor) and isinstance(x, dg.Tensor)
            return g * 2 * x

    x = dg.tensor([1.0, 2.0], dtype=dg.float64, requires_grad=True)
    w = dg.tensor([3.0, 5.0], dtype=dg.float64, requires_grad=True)
    (g,) = dg.autograd.grad((Square.apply(x) * w).sum(), x, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), [6.0, 20.0])
    with pytest.raises(RuntimeError, match="not differentiable twice"):
        dg.autograd.grad(g.sum(), w)
