import numpy as np
import pytest

import distgrad as dg
from tests.ops.harness import Float, OpCase, make_tests


def _linear(x, w, b=None):
    out = x @ w.T
    return out if b is None else out + b


def _matmul_case(a, b):
    return OpCase(
        f"matmul_{'x'.join(map(str, a))}_{'x'.join(map(str, b))}",
        dg.matmul,
        np.matmul,
        (Float(a), Float(b)),
    )


def _einsum_case(name, equation, *shapes, ref_equation=None):
    return OpCase(
        f"einsum_{name}",
        lambda *xs: dg.einsum(equation, *xs),
        lambda *xs: np.einsum(ref_equation or equation, *xs),
        tuple(map(Float, shapes)),
    )


CASES = [
    _matmul_case((3,), (3,)),
    _matmul_case((3,), (3, 4)),
    _matmul_case((2, 3), (3,)),
    _matmul_case((2, 3), (3, 4)),
    _matmul_case((5, 2, 3), (3, 4)),
    _matmul_case((2, 3), (5, 3, 4)),
    _matmul_case((3,), (5, 3, 4)),
    _matmul_case((5, 2, 3), (3,)),
    _matmul_case((2, 1, 2, 3), (4, 3, 2)),
    OpCase("matmul_operator", lambda a, b: a @ b, np.matmul, (Float((4, 2, 3)), Float((4, 3, 2)))),
    OpCase("rmatmul", lambda a, b: b.__rmatmul__(a), np.matmul, (Float((2, 3)), Float((3, 4)))),
    OpCase("mm", dg.mm, np.matmul, (Float((2, 3)), Float((3, 4)))),
    OpCase("bmm", lambda a, b: a.bmm(b), np.matmul, (Float((3, 2, 4)), Float((3, 4, 2)))),
    OpCase("dot", dg.dot, np.dot, (Float((4,)), Float((4,)))),
    OpCase("outer", lambda a, b: a.outer(b), np.outer, (Float((3,)), Float((4,)))),
    OpCase("linear", dg.linear, _linear, (Float((5, 3)), Float((4, 3)), Float((4,)))),
    OpCase("linear_no_bias", dg.linear, _linear, (Float((5, 3)), Float((4, 3)))),
    OpCase("linear_3d_input", dg.linear, _linear, (Float((2, 5, 3)), Float((4, 3)), Float((4,)))),
    OpCase("linear_1d_input", dg.linear, _linear, (Float((3,)), Float((4, 3)), Float((4,)))),
    _einsum_case("mm", "ij,jk->ik", (2, 3), (3, 4)),
    _einsum_case("bmm", "bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    _einsum_case("attention", "bhqd,bhkd->bhqk", (2, 2, 3, 4), (2, 2, 5, 4)),
    _einsum_case("transpose", "ij->ji", (2, 3)),
    _einsum_case("diagonal", "ii->i", (3, 3)),
    _einsum_case("trace", "ii", (3, 3)),
    _einsum_case("sum_all", "ij->", (2, 3)),
    _einsum_case("outer", "i,j->ij", (3,), (4,)),
    _einsum_case("rowwise_dot", "ij,ij->i", (3, 4), (3, 4)),
    _einsum_case("broadcast_dim", "ij,ij->ij", (1, 4), (3, 4)),
    _einsum_case("summed_in_one_operand", "ijk,k->i", (2, 3, 4), (4,)),
    _einsum_case("diagonal_and_contraction", "iij,j->i", (3, 3, 2), (2,)),
    _einsum_case("implicit", "ij,jk", (2, 3), (3, 4)),
    _einsum_case("ellipsis_broadcast", "...ij,...jk->...ik", (2, 1, 3, 4), (5, 4, 2)),
    _einsum_case("ellipsis_implicit", "...j,j", (2, 3, 4), (4,)),
    _einsum_case("three_operands", "ij,jk,kl->il", (2, 3), (3, 4), (4, 2)),
]

globals().update(make_tests(CASES))


@pytest.mark.parametrize(
    "fn", [lambda a, b: a @ b.T, dg.linear, lambda a, b: dg.einsum("ij,kj->ik", a, b)]
)
def test_float32_gradients_stay_float32(fn):
    a = dg.randn(5, 3, requires_grad=True)
    b = dg.randn(4, 3, requires_grad=True)
    out = fn(a, b)
    assert out.dtype == dg.float32
    out.sum().backward()
    assert a.grad.dtype == b.grad.dtype == dg.float32


def test_linear_gradients_match_hand_written_numpy():
    rng = np.random.default_rng(0)
    x, w, b, g = (rng.standard_normal(s) for s in ((6, 3), (4, 3), (4,), (6, 4)))
    tx, tw, tb = (dg.tensor(v, requires_grad=True) for v in (x, w, b))
    dg.linear(tx, tw, tb).backward(dg.tensor(g))
    np.testing.assert_allclose(tx.grad.numpy(), g @ w)
    np.testing.assert_allclose(tw.grad.numpy(), g.T @ x)
    np.testing.assert_allclose(tb.grad.numpy(), g.sum(0))


def test_linear_of_a_permuted_stack_has_first_and_second_gradients():
    # forward folds a non-contiguous stack into one GEMM over a contiguous copy; the weight's
    # gradient reads that copy, while a double backward must still reach the input itself
    x = dg.tensor(np.random.default_rng(1).standard_normal((3, 4, 5)), requires_grad=True)
    w = dg.tensor(np.random.default_rng(2).standard_normal((2, 5)), requires_grad=True)
    b = dg.tensor(np.random.default_rng(3).standard_normal(2), requires_grad=True)

    def fn(x, w, b):  # the output permuted back: its gradient arrives non-contiguous too
        return ((dg.linear(x.permute(1, 0, 2), w, b) ** 2).permute(1, 0, 2),)

    assert not x.permute(1, 0, 2).is_contiguous()
    assert dg.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-5, rtol=1e-3)
    assert dg.autograd.gradgradcheck(fn, (x, w, b), eps=1e-6, atol=1e-4, rtol=1e-3)
    want = np.transpose(x.detach().numpy(), (1, 0, 2)) @ w.detach().numpy().T + b.detach().numpy()
    np.testing.assert_allclose(dg.linear(x.permute(1, 0, 2), w, b).detach().numpy(), want)


def test_einsum_accepts_operand_list_and_returns_a_copy():
    x = dg.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = dg.einsum("ij->ij", [x])
    y.add_(1)
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


# ---- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op", [dg.matmul, dg.mm, dg.bmm])
def test_mismatched_dtypes_raise(op):
    shape = (2, 3, 3) if op is dg.bmm else (3, 3)
    a = dg.ones(*shape)
    b = dg.ones(*shape, dtype=dg.float64)
    with pytest.raises(
        RuntimeError, match="expected m1 and m2 to have the same dtype, but got: float != double"
    ):
        op(a, b)


def test_mismatched_shapes_name_both_shapes():
    with pytest.raises(RuntimeError, match=r"shapes cannot be multiplied \(2x3 and 4x5\)"):
        dg.ones(2, 3) @ dg.ones(4, 5)
    with pytest.raises(RuntimeError, match=r"mm: .*\(2x3 and 4x5\)"):
        dg.mm(dg.ones(2, 3), dg.ones(4, 5))
    with pytest.raises(RuntimeError, match=r"batch dims of shapes \[2, 3, 4\] and \[3, 4, 5\]"):
        dg.matmul(dg.ones(2, 3, 4), dg.ones(3, 4, 5))
    with pytest.raises(RuntimeError, match=r"\(5x3 and 4x2\).*\[5, 3\].*\[2, 4\]"):
        dg.linear(dg.ones(5, 3), dg.ones(2, 4))
    with pytest.raises(RuntimeError, match="at least 1D"):
        dg.matmul(dg.tensor(2.0), dg.ones(2))


def test_matmul_shape_errors_when_recording_change_nothing():
    # matmul diagnoses shapes when numpy refuses them (inside the recorded op): same messages
    # for vectors and stacks, and the operands keep their state
    a = dg.ones(2, 3, 4, requires_grad=True)
    v = dg.ones(5, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shapes cannot be multiplied \(2x3x4 and 5\)"):
        a @ v
    with pytest.raises(RuntimeError, match=r"shapes cannot be multiplied \(5 and 2x3x4\)"):
        v @ a
    with pytest.raises(RuntimeError, match=r"shapes cannot be multiplied \(3 and 5\)"):
        dg.ones(3) @ v
    with pytest.raises(RuntimeError, match="they are 1D and 0D"):
        v @ dg.tensor(2.0)
    assert a.is_leaf and v.is_leaf and a.grad is None and v.grad is None
    assert a.version == 0 and v.version == 0
    (a @ dg.ones(4, 5)).sum().backward()  # still usable
    assert a.grad.shape == (2, 3, 4)


def test_restricted_products_check_dims():
    with pytest.raises(RuntimeError, match=r"mm: self must be a matrix.*\[2, 2, 2\]"):
        dg.mm(dg.ones(2, 2, 2), dg.ones(2, 2))
    with pytest.raises(RuntimeError, match="bmm: batch2 must be a 3D tensor"):
        dg.bmm(dg.ones(2, 2, 2), dg.ones(2, 2))
    with pytest.raises(RuntimeError, match=r"batch2 tensor to be: \[2, 3\] but got: \[4, 3\]"):
        dg.bmm(dg.ones(2, 4, 3), dg.ones(4, 3, 2))
    with pytest.raises(RuntimeError, match="1D tensors expected, but got 2D and 1D"):
        dg.dot(dg.ones(2, 2), dg.ones(2))
    with pytest.raises(RuntimeError, match="inconsistent tensor size"):
        dg.dot(dg.ones(2), dg.ones(3))
    with pytest.raises(RuntimeError, match="outer: expected 1-D"):
        dg.outer(dg.ones(2, 2), dg.ones(2))


def test_einsum_errors():
    with pytest.raises(ValueError, match="2 operand subscripts but 1 operands"):
        dg.einsum("ij,jk->ik", dg.ones(2, 2))
    with pytest.raises(ValueError, match=r"'ijk' do not match an operand of shape \[2, 2\]"):
        dg.einsum("ijk->i", dg.ones(2, 2))
    with pytest.raises(RuntimeError, match=r"shapes \[2, 3\], \[4, 5\]"):
        dg.einsum("ij,jk->ik", dg.ones(2, 3), dg.ones(4, 5))
    with pytest.raises(RuntimeError, match="one dtype"):
        dg.einsum("i,i->", dg.ones(2), dg.ones(2, dtype=dg.float64))
