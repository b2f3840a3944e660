"""``gradcheck``/``gradgradcheck``: compare autograd's Jacobians with central differences."""

from __future__ import annotations

import numpy as np

from .engine import grad as autograd_grad
from .grad_mode import enable_grad, no_grad
from .tensor import Tensor

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(RuntimeError):
    """Raised by gradcheck when an analytical Jacobian differs from the numerical one."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _differentiable_outputs(outputs):
    return [o for o in outputs if isinstance(o, Tensor) and o.requires_grad]


def _numerical_jacobians(fn, inputs, eps):
    """{(input index, output index): J} with J of shape (output numel, input numel)."""
    with no_grad():
        outputs = _as_tuple(fn(*inputs))
    out_arrays = [
        np.asarray(o._host_array(), dtype=np.float64) for o in outputs if isinstance(o, Tensor)
    ]
    jac = {}
    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        arr = t._array
        cols = [np.zeros((o.size, arr.size)) for o in out_arrays]
        for j in range(arr.size):
            idx = np.unravel_index(j, arr.shape)
            orig = arr[idx].copy()
            with no_grad():
                arr[idx] = orig + eps
                plus = [
                    np.array(o._host_array(), np.float64)
                    for o in _as_tuple(fn(*inputs))
                    if isinstance(o, Tensor)
                ]
                arr[idx] = orig - eps
                minus = [
                    np.array(o._host_array(), np.float64)
                    for o in _as_tuple(fn(*inputs))
                    if isinstance(o, Tensor)
                ]
                arr[idx] = orig
            for k, (p, m) in enumerate(zip(plus, minus)):
                cols[k][:, j] = ((p - m) / (2 * eps)).ravel()
        for k, c in enumerate(cols):
            jac[(i, k)] = c
    return jac


def _analytical_jacobians(fn, inputs):
    outputs = [o for o in _as_tuple(fn(*inputs)) if isinstance(o, Tensor)]
    diff_inputs = [
        (i, t) for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad
    ]
    jac = {}
    for k, out in enumerate(outputs):
        rows = {i: np.zeros((out.numel(), t.numel())) for i, t in diff_inputs}
        if out.requires_grad:
            xp_out = out._array
            for r in range(out.numel()):
                onehot = np.zeros(out.numel(), dtype=xp_out.dtype)
                onehot[r] = 1
                gout = Tensor(onehot.reshape(out.shape))
                grads = autograd_grad(
                    out, [t for _, t in diff_inputs], gout, retain_graph=True, allow_unused=True
                )
                for (i, _), g in zip(diff_inputs, grads):
                    if g is not None:
                        rows[i][r] = np.asarray(g._host_array(), np.float64).ravel()
        for i, _ in diff_inputs:
            jac[(i, k)] = rows[i]
    return jac


def gradcheck(
    fn,
    inputs,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Check ``fn``'s gradients w.r.t. the float64 tensors in ``inputs`` that require grad
    against central differences. Returns True, or raises ``GradcheckError`` naming the input,
    output and worst element."""
    inputs = _as_tuple(inputs)
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t._array.dtype != np.float64:
            import warnings

            warnings.warn(
                f"gradcheck: input {i} is {t.dtype}, not float64; the check may fail "
                f"for lack of precision",
                stacklevel=2,
            )
    numerical = _numerical_jacobians(fn, inputs, eps)
    analytical = _analytical_jacobians(fn, inputs)
    for key, num in numerical.items():
        ana = analytical.get(key, np.zeros_like(num))
        if not np.allclose(ana, num, atol=atol, rtol=rtol):
            if not raise_exception:
                return False
            err = np.abs(ana - num)
            worst = np.unravel_index(int(err.argmax()), err.shape)
            raise GradcheckError(
                f"Jacobian mismatch for output {key[1]} with respect to input {key[0]}: worst "
                f"at (output element {worst[0]}, input element {worst[1]}): analytical "
                f"{ana[worst]:.6g}, numerical {num[worst]:.6g} (atol={atol}, rtol={rtol}).\n"
                f"numerical:\n{num}\nanalytical:\n{ana}"
            )
    return True


def gradgradcheck(
    fn,
    inputs,
    grad_outputs=None,
    *,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Check second derivatives: gradcheck of the map (inputs, v) -> vJP(fn, inputs, v)."""
    inputs = _as_tuple(inputs)
    outputs = _differentiable_outputs(_as_tuple(fn(*inputs)))
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = [
            Tensor(rng.standard_normal(o.shape).astype(o._array.dtype), requires_grad=True)
            for o in outputs
        ]
    grad_outputs = list(_as_tuple(grad_outputs))
    n = len(inputs)
    diff_idx = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]

    def vjp(*args):
        ins, gos = args[:n], args[n:]
        with enable_grad():  # the numerical Jacobian calls this under no_grad
            outs = _differentiable_outputs(_as_tuple(fn(*ins)))
            grads = autograd_grad(
                outs, [ins[i] for i in diff_idx], list(gos), create_graph=True, allow_unused=True
            )
        return tuple(g for g in grads if g is not None)

    return gradcheck(
        vjp,
        tuple(inputs) + tuple(grad_outputs),
        eps=eps,
        atol=atol,
        rtol=rtol,
        raise_exception=raise_exception,
    )
