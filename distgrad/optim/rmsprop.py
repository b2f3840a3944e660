"""RMSprop (Hinton), optionally centered and with momentum."""

from __future__ import annotations

from ..backend import array_module_for
from .optimizer import (
    Optimizer,
    _buffer,
    _check_nonnegative,
    _count_step,
    _evaluate,
    _gradient,
    _new_step,
    _zeros_like,
)

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop as PyTorch's: ``v = alpha*v + (1-alpha)*g*g``; the denominator is
    ``sqrt(v) + eps``, or ``sqrt(v - gbar**2) + eps`` when ``centered`` (``gbar`` the running
    mean of ``g``); then ``buf = momentum*buf + g / denom; p -= lr * buf`` with momentum,
    ``p -= lr * g / denom`` without. ``weight_decay`` adds ``weight_decay * p`` to ``g``."""

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0,
        momentum=0,
        centered=False,
        maximize=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                alpha=alpha,
                eps=eps,
                centered=centered,
                weight_decay=weight_decay,
                maximize=maximize,
            ),
        )

    def _check_hyperparameters(self, group):
        _check_nonnegative(group, "lr", "eps", "momentum", "weight_decay", "alpha")

    def step(self, closure=None):
        """One RMSprop update of every parameter that has a gradient; returns ``closure()``'s
        loss when a closure is given."""
        loss = _evaluate(closure)
        self._update_each(_update, _init_state)
        return loss


def _init_state(p, state, group):
    state["step"] = _new_step()
    state["square_avg"] = _zeros_like(p)


def _update(p, g, state, group):
    xp = array_module_for(p)
    alpha, momentum = group["alpha"], group["momentum"]
    _count_step(state)
    d = _gradient(p, g, group)
    v = state["square_avg"].array
    v *= alpha
    v += (1 - alpha) * d * d
    if group["centered"]:
        gbar = _buffer(state, "grad_avg", p)
        gbar += (d - gbar) * (1 - alpha)
        v = v - gbar * gbar
    step = xp.divide(d, xp.sqrt(v) + group["eps"], out=d)
    if momentum > 0:
        buf = _buffer(state, "momentum_buffer", p)
        buf *= momentum
        buf += step
        step = xp.multiply(buf, group["lr"], out=d)
    else:
        step *= group["lr"]
    p -= step
