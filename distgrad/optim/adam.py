"""Adam and AdamW (decoupled weight decay), with AMSGrad."""

from __future__ import annotations

import math

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

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba) as PyTorch's: ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g*g``,
    ``p -= lr / (1-b1**t) * m / (sqrt(v) / sqrt(1-b2**t) + eps)``; ``amsgrad`` uses the running
    maximum of ``v``. ``weight_decay`` adds ``weight_decay * p`` to the gradient (L2), or with
    ``decoupled_weight_decay=True`` (AdamW) first scales ``p`` by ``1 - lr * weight_decay``."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        maximize=False,
        decoupled_weight_decay=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=tuple(betas),
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
                decoupled_weight_decay=decoupled_weight_decay,
            ),
        )

    def _check_hyperparameters(self, group):
        _check_nonnegative(group, "lr", "eps")
        if len(group["betas"]) != 2:
            raise ValueError(
                f"betas must be a pair (beta1, beta2), got {len(group['betas'])} value(s): "
                f"{group['betas']}"
            )
        for i, beta in enumerate(group["betas"]):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        _check_nonnegative(group, "weight_decay")

    def step(self, closure=None):
        """One Adam update of every parameter that has a gradient; returns ``closure()``'s loss
        when a closure is given."""
        loss = _evaluate(closure)
        self._update_each(_update, _init_state)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * weight_decay``
    before the Adam update; ``weight_decay`` defaults to 0.01."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )


def _init_state(p, state, group):
    state["step"] = _new_step()
    state["exp_avg"] = _zeros_like(p)
    state["exp_avg_sq"] = _zeros_like(p)


def _update(p, g, state, group):
    xp = array_module_for(p)
    lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
    decoupled = group["decoupled_weight_decay"]
    t = _count_step(state)
    d = _gradient(p, g, group, l2=not decoupled)
    if decoupled and wd != 0:
        p *= 1 - lr * wd
    m, v = state["exp_avg"].array, state["exp_avg_sq"].array
    m += (d - m) * (1 - beta1)
    v *= beta2
    v += (1 - beta2) * d * d
    if group["amsgrad"]:
        vmax = _buffer(state, "max_exp_avg_sq", p)
        v = xp.maximum(vmax, v, out=vmax)
    denom = xp.sqrt(v, out=d)
    denom /= math.sqrt(1 - beta2**t)
    denom += group["eps"]
    step = xp.divide(m, denom, out=d)
    step *= lr / (1 - beta1**t)
    p -= step
