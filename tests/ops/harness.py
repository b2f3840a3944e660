"""One table-driven harness for every op.

A family's test module lists ``OpCase``s and calls ``make_tests(CASES)``; each case is then
checked for: forward against a numpy reference (float32 and float64), gradients against
central differences in float64 (``gradcheck``), double backward (``gradgradcheck``) unless the
op is once-differentiable, non-contiguous inputs, and the same forward/gradients on cupy when a
GPU is present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import distgrad as dg
from distgrad.autograd import gradcheck, gradgradcheck


@dataclasses.dataclass(frozen=True)
class Float:
    """A random float input of ``shape`` drawn uniformly from [low, high]; ``away_from`` keeps
    values at least ``gap`` away from a point (kinks such as 0 for abs/relu)."""

    shape: tuple
    low: float = -2.0
    high: float = 2.0
    away_from: float | None = None
    gap: float = 0.05
    grad: bool = True

    def make(self, rng):
        x = rng.uniform(self.low, self.high, self.shape)
        if self.away_from is not None:
            close = np.abs(x - self.away_from) < self.gap
            x = np.where(
                close, self.away_from + np.where(x >= self.away_from, 1, -1) * 2 * self.gap, x
            )
        return x


@dataclasses.dataclass(frozen=True)
class Int:
    """A random int64 input in [low, high) (indices, class labels); never differentiated."""

    shape: tuple
    high: int
    low: int = 0

    def make(self, rng):
        return rng.integers(self.low, self.high, self.shape).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Bool:
    shape: tuple
    p: float = 0.5

    def make(self, rng):
        return rng.random(self.shape) < self.p


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A given array; differentiated when floating and ``grad``."""

    value: Any
    grad: bool = True

    def make(self, rng):
        return np.array(self.value)


@dataclasses.dataclass
class OpCase:
    """``fn(*tensors)`` is the distgrad call, ``ref(*arrays)`` its numpy reference. Inputs
    that are not Float/Int/Bool/Fixed specs are passed as they are (Python scalars, dims)."""

    name: str
    fn: Callable
    ref: Callable | None
    inputs: tuple
    grad: bool = True
    double: bool = True
    atol: float = 1e-5
    rtol: float = 1e-4
    float32: bool = True

    def __str__(self):
        return self.name


SPECS = (Float, Int, Bool, Fixed)


def _arrays(case, seed=0):
    rng = np.random.default_rng(seed)
    return [spec.make(rng) if isinstance(spec, SPECS) else spec for spec in case.inputs]


def _tensors(case, arrays, dtype=np.float64, device="cpu", requires_grad=True, contiguous=True):
    out = []
    for spec, a in zip(case.inputs, arrays):
        if not isinstance(spec, SPECS):
            out.append(a)
            continue
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            a = a.astype(dtype)
        if not contiguous and isinstance(a, np.ndarray) and a.ndim >= 1:
            # same values, a non-contiguous (transposed, then strided) layout
            big = np.repeat(np.ascontiguousarray(a.T)[..., None], 2, axis=-1)[..., 0]
            a = big.T
            assert not a.flags.c_contiguous or a.ndim < 2 or a.size <= 1
        t = dg.tensor(a, device=device) if contiguous else dg.Tensor(a)
        if device != "cpu" and not contiguous:
            t = t.to(device)
        wants = getattr(spec, "grad", False) and isinstance(spec, (Float, Fixed))
        if requires_grad and wants and t.is_floating_point() and case.grad:
            t.requires_grad_(True)
        out.append(t)
    return out


def _to_numpy(x):
    if isinstance(x, dg.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, (tuple, list)):
        return type(x)(_to_numpy(v) for v in x)
    return x


def _assert_close(got, want, atol, rtol, what):
    if isinstance(want, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(want), what
        for g, w in zip(got, want):
            _assert_close(g, w, atol, rtol, what)
        return
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != reference {want.shape}"
    np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=what)


def check_forward(case, dtype=np.float64, device="cpu", contiguous=True):
    arrays = _arrays(case)
    tensors = _tensors(case, arrays, dtype, device, requires_grad=False, contiguous=contiguous)
    got = _to_numpy(case.fn(*tensors))
    ref_inputs = [
        a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in arrays
    ]
    want = case.ref(*ref_inputs)
    tol = (case.atol, case.rtol) if dtype == np.float64 else (max(case.atol, 1e-4), 1e-3)
    _assert_close(got, want, *tol, f"{case.name} forward ({np.dtype(dtype).name}, {device})")
    if dtype == np.float32 and isinstance(got, np.ndarray) and got.dtype.kind == "f":
        assert got.dtype == np.float32, f"{case.name}: float32 inputs gave {got.dtype}"


def _scalarised(case):
    def fn(*xs):
        out = case.fn(*xs)
        return out if isinstance(out, tuple) else (out,)

    return fn


def check_grad(case, contiguous=True):
    tensors = _tensors(case, _arrays(case), contiguous=contiguous)
    assert any(isinstance(t, dg.Tensor) and t.requires_grad for t in tensors), case.name
    gradcheck(_scalarised(case), tensors, eps=1e-6, atol=1e-5, rtol=1e-3)


def check_double_grad(case):
    tensors = _tensors(case, _arrays(case))
    gradgradcheck(_scalarised(case), tensors, eps=1e-6, atol=1e-4, rtol=1e-3)


def check_device_matches_cpu(case, device="cuda"):
    """Forward and first gradients on ``device`` equal the CPU's."""
    arrays = _arrays(case)
    results = []
    for dev in ("cpu", device):
        tensors = _tensors(case, arrays, device=dev)
        out = case.fn(*tensors)
        outs = out if isinstance(out, tuple) else (out,)
        diff = [o for o in outs if isinstance(o, dg.Tensor) and o.requires_grad]
        grads = []
        if diff:
            seeds = [dg.ones_like(o) for o in diff]
            ins = [t for t in tensors if isinstance(t, dg.Tensor) and t.requires_grad]
            grads = dg.autograd.grad(diff, ins, seeds, allow_unused=True)
        results.append((_to_numpy(list(outs)), _to_numpy([g for g in grads if g is not None])))
    _assert_close(results[1], results[0], 1e-8, 1e-6, f"{case.name} on {device} vs cpu")


def check_float32_backward(case):
    """float32 inputs get float32 gradients (no silent float64 promotion in a backward)."""
    tensors = _tensors(case, _arrays(case), dtype=np.float32)
    outs = case.fn(*tensors)
    outs = outs if isinstance(outs, tuple) else (outs,)
    diff = [o for o in outs if isinstance(o, dg.Tensor) and o.requires_grad]
    dg.autograd.backward(diff, [dg.ones_like(o) for o in diff])
    for i, t in enumerate(tensors):
        if isinstance(t, dg.Tensor) and t.requires_grad and t.grad is not None:
            assert t.grad.dtype == dg.float32, f"{case.name}: input {i} got a {t.grad.dtype} grad"


def make_tests(cases) -> dict:
    """Parametrized pytest functions for a family's table, by name; a test module installs
    them with ``globals().update(make_tests(CASES))``."""
    ids = [c.name for c in cases]
    with_grad = [c for c in cases if c.grad]
    with_double = [c for c in with_grad if c.double]

    @pytest.mark.parametrize("case", cases, ids=ids)
    def test_forward(case):
        check_forward(case, np.float64)
        if case.float32:
            check_forward(case, np.float32)

    @pytest.mark.parametrize("case", cases, ids=ids)
    def test_forward_noncontiguous(case):
        check_forward(case, np.float64, contiguous=False)

    @pytest.mark.parametrize("case", with_grad, ids=[c.name for c in with_grad])
    def test_gradcheck(case):
        check_grad(case)

    @pytest.mark.parametrize("case", with_grad, ids=[c.name for c in with_grad])
    def test_gradcheck_noncontiguous(case):
        check_grad(case, contiguous=False)

    @pytest.mark.parametrize("case", with_double, ids=[c.name for c in with_double])
    def test_gradgradcheck(case):
        check_double_grad(case)

    @pytest.mark.parametrize("case", with_grad, ids=[c.name for c in with_grad])
    def test_float32_backward(case):
        check_float32_backward(case)

    @pytest.mark.gpu
    @pytest.mark.parametrize("case", cases, ids=ids)
    def test_cuda_matches_cpu(case):
        check_device_matches_cpu(case)

    return {name: fn for name, fn in locals().items() if name.startswith("test_")}
