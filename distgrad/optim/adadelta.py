"""Adadelta (Zeiler, 2012)."""

from __future__ import annotations

from ..backend import array_module_for
from .optimizer import (
    Optimizer,
    _check_nonnegative,
    _count_step,
    _evaluate,
    _gradient,
    _new_step,
    _zeros_like,
)

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """Adadelta as PyTorch's: ``v = rho*v + (1-rho)*g*g``; ``delta = sqrt(u + eps) /
    sqrt(v + eps) * g``; ``u = rho*u + (1-rho)*delta*delta``; ``p -= lr * delta``.
    ``weight_decay`` adds ``weight_decay * p`` to ``g``; ``maximize`` ascends."""

    def __init__(
        self,
        params,
        lr=1.0,
        rho=0.9,
        eps=1e-6,
        weight_decay=0,
        foreach=None,
        *,
        capturable=False,
        maximize=False,
        differentiable=False,
    ):
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        super().__init__(
            params,
            dict(
                lr=lr,
                rho=rho,
                eps=eps,
                weight_decay=weight_decay,
                maximize=maximize,
                foreach=foreach,
                capturable=capturable,
                differentiable=differentiable,
            ),
        )

    def _check_hyperparameters(self, group):
        _check_nonnegative(group, "lr", "eps", "weight_decay")

    def step(self, closure=None):
        """One Adadelta update of every parameter that has a gradient; returns ``closure()``'s
        loss when a closure is given."""
        loss = _evaluate(closure)
        self._update_each(_update, _init_state)
        return loss


def _init_state(p, state, group):
    state["step"] = _new_step()
    state["square_avg"] = _zeros_like(p)
    state["acc_delta"] = _zeros_like(p)


def _update(p, g, state, group):
    xp = array_module_for(p)
    rho, eps = group["rho"], group["eps"]
    _count_step(state)
    d = _gradient(p, g, group)
    v = state["square_avg"].array
    u = state["acc_delta"].array
    v *= rho
    v += (1 - rho) * d * d
    delta = xp.sqrt(u + eps)
    delta /= xp.sqrt(v + eps)
    delta *= d
    u *= rho
    u += (1 - rho) * delta * delta
    delta *= group["lr"]
    p -= delta
