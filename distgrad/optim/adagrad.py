"""Adagrad (Duchi et al.)."""

from __future__ import annotations

from ..autograd import Tensor
from ..backend import array_module_for
from .optimizer import (
    Optimizer,
    _check_nonnegative,
    _count_step,
    _evaluate,
    _gradient,
    _new_step,
    _on_device,
)

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad as PyTorch's: ``sum += g*g``, ``p -= lr / (1 + (t-1)*lr_decay) * g /
    (sqrt(sum) + eps)`` at step ``t``; ``weight_decay`` adds ``weight_decay * p`` to ``g``.
    ``sum`` starts at ``initial_accumulator_value``; the state of every parameter is made at
    construction, as PyTorch does."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                eps=eps,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                maximize=maximize,
            ),
        )
        for group in self.param_groups:
            for p in group["params"]:
                with _on_device(p.array):
                    _init_state(p.array, self.state[p], group)

    def _check_hyperparameters(self, group):
        _check_nonnegative(
            group, "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"
        )

    def step(self, closure=None):
        """One Adagrad update of every parameter that has a gradient; returns ``closure()``'s
        loss when a closure is given."""
        loss = _evaluate(closure)
        self._update_each(_update, _init_state)
        return loss


def _init_state(p, state, group):
    state["step"] = _new_step()
    state["sum"] = Tensor(array_module_for(p).full_like(p, group["initial_accumulator_value"]))


def _update(p, g, state, group):
    xp = array_module_for(p)
    t = _count_step(state)
    d = _gradient(p, g, group)
    s = state["sum"].array
    s += d * d
    step = xp.divide(d, xp.sqrt(s) + group["eps"], out=d)
    step *= group["lr"] / (1 + (t - 1) * group["lr_decay"])
    p -= step
