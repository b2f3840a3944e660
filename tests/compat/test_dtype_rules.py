"""torch's dtype rules and error messages for the differences issue 19 lists; each case is
checked against the rule and, where torch is installed, against torch itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

import distgrad as dg

try:
    import torch
except ImportError:  # the parity half of each case is skipped
    torch = None

# (name, fn(module) -> a comparable Python value); both frameworks must agree
SAME_RESULT = [
    ("int_add_float", lambda m: str((m.tensor([1, 2]) + 1.5).dtype).split(".")[-1]),
    ("int_mul_float", lambda m: str((m.tensor([1, 2]) * 2.5).dtype).split(".")[-1]),
    ("int_pow_float", lambda m: str((m.tensor([1, 2]) ** 0.5).dtype).split(".")[-1]),
    ("round_int", lambda m: str(m.round(m.tensor([1, 2])).dtype).split(".")[-1]),
    ("round_int32", lambda m: str(m.tensor([1], dtype=m.int32).round().dtype).split(".")[-1]),
    ("floor_int", lambda m: m.floor(m.tensor([3, -2])).tolist()),
    ("square_int", lambda m: str(m.square(m.tensor([3])).dtype).split(".")[-1]),
    (
        "square_bool",
        lambda m: (
            str(m.square(m.tensor([True])).dtype).split(".")[-1],
            m.square(m.tensor([True, False])).tolist(),
        ),
    ),
    ("all_uint8", lambda m: str(m.tensor([1, 2], dtype=m.uint8).all().dtype).split(".")[-1]),
    ("any_uint8_dim", lambda m: m.tensor([[1, 0], [0, 0]], dtype=m.uint8).any(1).tolist()),
    ("chunk_empty", lambda m: [t.shape[0] for t in m.zeros(0, 3).chunk(3)]),
    ("remainder_inf", lambda m: m.remainder(m.tensor([5.0, -5.0]), float("inf")).tolist()),
    ("fmod_inf", lambda m: m.fmod(m.tensor([5.0, -5.0]), float("inf")).tolist()),
    ("remainder_1e30", lambda m: m.remainder(m.tensor([1e30], dtype=m.float64), 37.0).item()),
    ("fmod_float32", lambda m: m.fmod(m.tensor([1e30]), 13.0).item()),
    ("remainder_neg", lambda m: m.remainder(m.tensor([-7.5, 7.5]), -2.0).tolist()),
    (
        "softmax_inf",
        lambda m: str(m.softmax(m.tensor([[float("inf"), 1.0], [1.0, 2.0]]), 1).tolist()[0]),
    ),
    ("log_softmax_inf", lambda m: str(m.log_softmax(m.tensor([[float("inf"), 1.0]]), 1).tolist())),
    ("tile_minus_one", lambda m: m.tile(m.tensor([1, 2]), (2,)).tolist()),
]

# (name, fn(module), exception type, distgrad message pattern)
SAME_ERROR = [
    (
        "inplace_impossible_cast",
        lambda m: m.tensor([1, 2]).add_(1.5),
        RuntimeError,
        "can't be cast to the desired output type Long",
    ),
    ("ragged_tensor", lambda m: m.tensor([[1, 2], [3]]), ValueError, None),
    ("negative_size", lambda m: m.zeros(-2), RuntimeError, "negative dimension -2"),
    ("float_size", lambda m: m.ones(2.5), TypeError, "must be tuple of ints"),
    ("randn_size_none", lambda m: m.randn(size=None), TypeError, "size"),
    ("linear_none", lambda m: m.nn.Linear(None, 3), TypeError, None),
    ("conv2d_str", lambda m: m.nn.Conv2d("3", 4, 3), TypeError, None),
    (
        "isnan_list",
        lambda m: m.isnan([1.0]),
        TypeError,
        r"isnan\(\): argument 'input' \(position 1\) must be Tensor, not list",
    ),
    ("isinf_float", lambda m: m.isinf(1.0), TypeError, "must be Tensor, not float"),
    (
        "logical_and_list",
        lambda m: m.logical_and([True], m.tensor([True])),
        TypeError,
        "must be Tensor, not list",
    ),
    (
        "masked_fill_overflow",
        lambda m: m.tensor([1, 2], dtype=m.int8).masked_fill(m.tensor([True, False]), 1000),
        RuntimeError,
        "cannot be converted to type int8_t without overflow",
    ),
    ("add_none", lambda m: m.tensor([1, 2, 3]) + None, TypeError, "unsupported operand"),
    ("mul_str", lambda m: m.tensor([2.0]) * "1e3", TypeError, "unsupported operand"),
    ("bool_tensor_of_str", lambda m: m.tensor([1.5, "a"], dtype=m.bool), TypeError, "strings"),
    ("int_floordiv_zero", lambda m: m.tensor([1, 2]) // 0, RuntimeError, "ZeroDivisionError"),
    (
        "int_remainder_zero",
        lambda m: m.remainder(m.tensor([1, 2]), 0),
        RuntimeError,
        "ZeroDivisionError",
    ),
    ("int_fmod_zero", lambda m: m.fmod(m.tensor([1, 2]), 0), RuntimeError, "ZeroDivisionError"),
    (
        "int_floor_divide_tensor_zero",
        lambda m: m.floor_divide(m.tensor([1, 2]), m.tensor([0, 1])),
        RuntimeError,
        "ZeroDivisionError",
    ),
    (
        "lt_broadcast",
        lambda m: m.tensor([1, 2, 3]) < m.tensor([1, 2]),
        RuntimeError,
        r"size of tensor a \(3\) must match the size of tensor b \(2\) at non-singleton dimension 0",
    ),
    (
        "eq_broadcast",
        lambda m: m.eq(m.tensor([1, 2, 3]), m.tensor([1, 2])),
        RuntimeError,
        "must match the size",
    ),
    (
        "ge_broadcast",
        lambda m: m.ge(m.tensor([1, 2, 3]), m.tensor([1, 2])),
        RuntimeError,
        "must match the size",
    ),
    (
        "logical_or_broadcast",
        lambda m: m.logical_or(m.tensor([1, 2, 3]), m.tensor([1, 2])),
        RuntimeError,
        "must match the size",
    ),
    (
        "floor_divide_broadcast",
        lambda m: m.floor_divide(m.tensor([1, 2, 3]), m.tensor([1, 2])),
        RuntimeError,
        "must match the size",
    ),
]


@pytest.mark.parametrize("name, fn", SAME_RESULT, ids=[c[0] for c in SAME_RESULT])
def test_result_follows_torch(name, fn):
    got = fn(dg)
    if torch is not None:
        want = fn(torch)
        assert got == want or (
            isinstance(got, float) and isinstance(want, float) and math.isclose(got, want)
        ), f"{name}: distgrad {got!r}, torch {want!r}"
    else:
        assert got is not None


@pytest.mark.parametrize("name, fn, exc, pattern", SAME_ERROR, ids=[c[0] for c in SAME_ERROR])
def test_error_follows_torch(name, fn, exc, pattern):
    with pytest.raises(exc, match=pattern):
        fn(dg)
    if torch is not None:
        with pytest.raises(exc):
            fn(torch)


def test_int_tensor_with_python_float_gives_default_float():
    dg.set_default_dtype(dg.float64)
    try:
        assert (dg.tensor([1, 2]) * 1.5).dtype == dg.float64
    finally:
        dg.set_default_dtype(dg.float32)
    assert (dg.tensor([1, 2]) - 0.5).dtype == dg.float32


def test_adam_betas_rejected_at_construction():
    p = [dg.nn.Parameter(dg.ones(1))]
    with pytest.raises(ValueError, match="betas must be a pair"):
        dg.optim.Adam(p, betas=(0.9,))
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        dg.optim.Adam(p, betas=(0.9, 1.5))


def test_batchnorm_that_raises_changes_no_statistics():
    bn = dg.nn.BatchNorm1d(3)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(dg.randn(1, 3))
    for k, v in bn.state_dict().items():
        assert np.array_equal(v.numpy(), before[k].numpy()), k
    bn.eval()
    assert bn(dg.randn(1, 3)).shape == (1, 3)  # eval mode uses the running statistics


def test_softmax_rows_with_inf_are_nan_and_others_untouched():
    y = dg.softmax(dg.tensor([[float("inf"), 0.0], [0.0, 0.0], [-float("inf"), 0.0]]), 1)
    rows = y.tolist()
    assert all(math.isnan(v) for v in rows[0]) and rows[1] == [0.5, 0.5] and rows[2] == [0.0, 1.0]
