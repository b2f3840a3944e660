"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from ..autograd import Tensor
from .optimizer import Optimizer, _check_nonnegative, _evaluate, _gradient

__all__ = ["SGD"]


class SGD(Optimizer):
    """SGD as PyTorch's: with ``d = grad + weight_decay * p`` (``-grad`` when maximizing),
    ``buf = momentum * buf + (1 - dampening) * d`` (``buf = d`` at the first step), the update
    is ``p -= lr * (d + momentum * buf)`` with Nesterov momentum, ``p -= lr * buf`` otherwise,
    and ``p -= lr * d`` without momentum."""

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            ),
        )

    def _check_hyperparameters(self, group):
        _check_nonnegative(group, "lr", "momentum", "weight_decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(self, closure=None):
        """One SGD update of every parameter that has a gradient; returns ``closure()``'s loss
        when a closure is given."""
        loss = _evaluate(closure)
        self._update_each(_update)
        return loss


def _update(p, g, state, group):
    lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
    # the gradient itself when nothing changes it (only read below), else a new array
    d = _gradient(p, g, group) if group["maximize"] or group["weight_decay"] else g
    if momentum != 0:
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = Tensor(d.copy())
        else:
            buf = state["momentum_buffer"].array
            buf *= momentum
            buf += d if dampening == 0 else (1 - dampening) * d
        buf = state["momentum_buffer"].array
        if not group["nesterov"]:
            p -= buf * lr
            return
        d = d + momentum * buf
    p -= d * lr
