"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_``."""

from __future__ import annotations

import math

from ...autograd import Tensor, no_grad

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(
    parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> Tensor:
    """Scale gradients in place so their total ``norm_type``-norm is at most ``max_norm``;
    returns the total norm before clipping."""
    grads = _grads(parameters)
    if not grads:
        from ... import ops

        return ops.tensor(0.0)
    xp = grads[0].device.xp
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        total = max(float(xp.abs(g.array).max()) for g in grads)
    else:
        total = sum(
            float((xp.abs(g.array.astype(xp.float64)) ** norm_type).sum()) for g in grads
        ) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from "
            f"`parameters` is non-finite ({total}), so it cannot be clipped. To "
            f"disable this error and scale the gradients by the non-finite norm "
            f"anyway, set `error_if_nonfinite=False`"
        )
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        with no_grad():
            for g in grads:
                g.mul_(coef)
    from ... import ops

    return ops.tensor(total, dtype=grads[0].dtype)


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value] in place."""
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)
