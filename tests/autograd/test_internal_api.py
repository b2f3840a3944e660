"""The op contract (``Op`` and the ``Function`` adapter) and the internal ``Tensor`` API that the
layers above autograd use instead of private attributes."""

import pathlib
import re

import numpy as np
import pytest

import distgrad as dg
from distgrad.autograd import Function, Op
from distgrad.autograd.graph import AccumulateGrad, get_gradient_edge

ROOT = pathlib.Path(dg.__file__).parent
# An attribute access on some object (``x._array``), not a relative import (``from ._version``).
PRIVATE = re.compile(
    r"(?<=[\w)\]])\._(array|grad|version|grad_fn|requires_grad|output_nr|accumulator|hooks|post_acc_hooks|"
    r"retains_grad|make|alias|edge|version_value|host_array)\b"
)
# autograd/ is where the attributes live; data_parallel.py is being rewritten by its owner.
EXEMPT = ("autograd",)
EXEMPT_FILES = ("distributed/data_parallel.py",)


def test_no_private_tensor_attributes_outside_autograd():
    uses = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in EXEMPT or rel.as_posix() in EXEMPT_FILES:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line):
                uses.append(f"{rel}:{n}: {line.strip()}")
    assert not uses, "use the Tensor internal API (autograd/tensor.py docstring):\n" + "\n".join(
        uses
    )


def test_on_arrays_flag_is_refused_with_a_pointer_to_op():
    with pytest.raises(TypeError, match=r"subclasses distgrad.autograd.Op"):

        class Old(Function):
            on_arrays = True


def _cube(base):
    """x**3 under either contract: the same formulas run on arrays (Op) or tensors (Function)."""

    class Cube(base):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x * x * g

    return Cube


CubeOp, CubeFunction = _cube(Op), _cube(Function)


def test_op_sees_arrays_function_sees_tensors():
    seen = {}

    def probe(base, key):
        class Probe(base):
            @staticmethod
            def forward(ctx, x):
                seen[key] = type(x)
                return x + 1

            @staticmethod
            def backward(ctx, g):
                seen[key + " grad"] = type(g)
                return g

        return Probe

    x = dg.randn(3, requires_grad=True)
    (probe(Op, "op").apply(x) + probe(Function, "fn").apply(x)).sum().backward()
    assert seen == {
        "op": np.ndarray,
        "op grad": np.ndarray,
        "fn": dg.Tensor,
        "fn grad": dg.Tensor,
    }
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])


@pytest.mark.parametrize("cls", [CubeOp, CubeFunction])
def test_both_kinds_give_first_and_second_order_gradients(cls):
    x = dg.tensor([1.0, -2.0, 3.0], dtype=dg.float64, requires_grad=True)
    y = cls.apply(x)
    assert y.grad_fn.name() == "CubeBackward"
    (g,) = dg.autograd.grad(y.sum(), x, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), [3.0, 12.0, 27.0])
    (gg,) = dg.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), [6.0, -12.0, 18.0])


@pytest.mark.parametrize("cls", [CubeOp, CubeFunction])
def test_both_kinds_replay_under_jit(cls):
    x = dg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    traced = dg.jit.trace(lambda t: cls.apply(t).sum(), (x,))
    traced(x).backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 12.0, 27.0])


def test_write_array_and_bump_version_count_in_place_changes():
    t = dg.zeros(3)
    assert t.version == 0
    t.write_array_(np.arange(3.0))
    assert t.version == 1 and t.tolist() == [0.0, 1.0, 2.0]
    np.multiply(t.array, 2.0, out=t.array)
    t.bump_version()
    assert t.version == 2 and t.tolist() == [0.0, 2.0, 4.0]


def test_a_bumped_version_is_caught_by_backward():
    x = dg.randn(3, requires_grad=True)
    y = x * 1.0
    z = y.exp()  # saves its output
    z.bump_version()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_share_version_set_array_set_grad_array():
    a, b = dg.zeros(4), dg.zeros(2)
    assert not b.shares_version(a)
    b.share_version(a)
    a.bump_version()
    assert b.shares_version(a) and b.version == 1
    b.set_array(np.ones(2, np.float32))
    assert b.tolist() == [1.0, 1.0] and b.version == 1
    p = dg.zeros(2, requires_grad=True)
    p.set_grad_array(np.full(2, 3.0, np.float32))
    assert p.grad.tolist() == [3.0, 3.0]
    p.set_grad_array(None)
    assert p.grad is None


def test_with_history_and_take_history():
    x = dg.randn(3, requires_grad=True)
    y = x * 2.0
    snap = y.with_history(y.array.copy())
    assert snap.grad_fn is y.grad_fn and snap.output_nr == y.output_nr and snap.requires_grad
    assert not snap.shares_version(y)
    out = snap * 3.0
    y.take_history_(out)
    assert y.grad_fn is out.grad_fn
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 6.0, 6.0])


def test_get_gradient_edge():
    p = dg.randn(2, requires_grad=True)
    edge = get_gradient_edge(p)
    assert isinstance(edge.node, AccumulateGrad) and edge.output_nr == 0
    assert edge.node.variable is p
    y = p * 2
    assert get_gradient_edge(y) == (y.grad_fn, 0)


def test_op_outputs_are_made_as_the_constructor_makes_tensors():
    # the per-op path (function._run) wraps outputs with tensor._plain_tensor (Tensor(array) without the call): it
    # must set every slot as the constructor does, or a slot added later stays unset
    from distgrad.autograd.tensor import Tensor, _plain_tensor

    array = np.ones(3, np.float32)
    fast, made = _plain_tensor(array), Tensor(array)
    for name in Tensor.__slots__:
        if name == "__weakref__":
            continue
        got, want = getattr(fast, name), getattr(made, name)
        if name == "_version":
            assert type(got) is type(want) and got.value == want.value == 0 and got is not want
        else:
            assert got is want or got == want, name
    y = dg.ones(3, requires_grad=True) * 2  # a recorded op's output
    assert y.grad_fn is not None and y.version == 0 and not y.retains_grad and y.grad_fn.name()
