"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from ..autograd import Tensor
from ..backend import array_module_for
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
    if (
        momentum != 0
        and state.get("momentum_buffer") is not None
        and not (group["nesterov"] or group["maximize"] or group["weight_decay"])
    ):  # the common step: the same operations, without a copy of the gradient
        buf = state["momentum_buffer"].array
        buf *= momentum
        buf += g if dampening == 0 else (1 - dampening) * g
        p -= buf * lr
        return
    d = _gradient(p, g, group)
    if momentum != 0:
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = Tensor(d.copy())
        else:
            buf = state["momentum_buffer"].array
            buf *= momentum
            buf += d if dampening == 0 else (1 - dampening) * d
        buf = state["momentum_buffer"].array
        if not group["nesterov"]:
            p -= array_module_for(p).multiply(buf, lr, out=d)
            return
        d += momentum * buf
    d *= lr
    p -= d
