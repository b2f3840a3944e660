"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_``."""

from __future__ import annotations

import math

from ...autograd import Tensor, no_grad

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def _partial(grads, norm_type: float) -> float:
    """Sum of |g|^p over ``grads`` (max |g| for the inf-norm)."""
    if not grads:
        return 0.0
    xp = grads[0].device.xp
    if math.isinf(norm_type):
        return max(float(xp.abs(g.array).max()) if g.array.size else 0.0 for g in grads)
    return sum(float((xp.abs(g.array.astype(xp.float64)) ** norm_type).sum()) for g in grads)


def clip_grad_norm_(
    parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> Tensor:
    """Scale gradients in place so their total ``norm_type``-norm is at most ``max_norm``;
    returns the total norm before clipping.

    Sharded parameters (those with ``reduce_partial_norm``, e.g. ``fully_shard``'s) hold only
    this rank's part of the gradient: their partial norm is combined over the ranks (a
    collective, so every rank must call this), and the norm is the global one for sharded and
    replicated parameters alike, the same on every rank."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    sharded = [p for p in params if p.grad is not None and hasattr(p, "reduce_partial_norm")]
    ids = {id(p) for p in sharded}
    grads = [p.grad for p in params if p.grad is not None and id(p) not in ids]
    sharded_grads = [p.grad for p in sharded]
    if not grads and not sharded_grads:
        from ... import ops

        return ops.tensor(0.0)
    norm_type = float(norm_type)
    local = _partial(grads, norm_type)
    if sharded:
        part = sharded[0].reduce_partial_norm(_partial(sharded_grads, norm_type), norm_type)
        local = max(local, part) if math.isinf(norm_type) else local + part
    total = local if math.isinf(norm_type) else local ** (1.0 / norm_type)
    grads = grads + sharded_grads
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
