"""``GradScaler``: loss scaling for float16 training, as ``torch.amp.GradScaler``.

Gradients of a float16 forward can underflow; the scaler multiplies the loss by a large
factor before backward, divides the gradients by it before the optimizer step, skips steps
whose gradients hold inf/NaN (leaving parameters and optimizer state untouched), and adapts
the factor: ``backoff_factor`` after a skipped step, ``growth_factor`` after
``growth_interval`` good steps in a row. Under distributed training every rank takes the same
decision (the inf/NaN flag is all-reduced).
"""

from __future__ import annotations

from ..autograd import Tensor
from ..backend import array_module_for
from .nonfinite import any_nonfinite

__all__ = ["GradScaler"]

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    """Scale the loss, unscale the gradients, skip steps with inf/NaN gradients.

    Usual loop::

        with amp.autocast(dtype=distgrad.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)   # unscale_ (if not done), then step unless inf/NaN
        scaler.update()
    """

    def __init__(
        self,
        device: str = "cpu",
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ):
        if not isinstance(device, str):  # GradScaler(init_scale) as older PyTorch
            device, init_scale = "cpu", device
        if growth_factor <= 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor}")
        if growth_interval < 1:
            raise ValueError(f"GradScaler: growth_interval must be >= 1, got {growth_interval}")
        self._enabled = bool(enabled)
        self._scale = float(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._per_optimizer: dict = {}  # id(optimizer) -> {"stage": ..., "found_inf": bool}

    # ---- the loop ---------------------------------------------------------------------
    def scale(self, outputs):
        """``outputs`` (a tensor, or a list/tuple of them) times the scale factor."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if not isinstance(outputs, Tensor):
            raise TypeError(f"GradScaler.scale: expected a tensor, got {type(outputs).__name__}")
        return outputs * self._scale

    def unscale_(self, optimizer) -> None:
        """Divide the gradients of ``optimizer``'s parameters by the scale (in place) and note
        whether any is inf/NaN. At most once per optimizer between ``update()`` calls; call it
        before clipping gradients."""
        if not self._enabled:
            return
        state = self._state(optimizer)
        if state["stage"] is _UNSCALED:
            raise RuntimeError(
                "unscale_() has already been called on this optimizer since the last update()."
            )
        if state["stage"] is _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv = 1.0 / self._scale
        arrays = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                arr = g.array
                xp = array_module_for(arr)
                xp.multiply(arr, arr.dtype.type(inv), out=arr)
                g.bump_version()
                arrays.append(arr)
        state["found_inf"] = any_nonfinite(arrays)
        state["stage"] = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step(*args, **kwargs)`` on unscaled gradients, skipped (returning None)
        when any of them is inf/NaN."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._state(optimizer)
        if state["stage"] is _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] is _READY:
            self.unscale_(optimizer)
        state["stage"] = _STEPPED
        if state["found_inf"]:
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None) -> None:
        """Adapt the scale for the next iteration (or set it to ``new_scale``): back off if a
        step this iteration found inf/NaN, grow after ``growth_interval`` clean steps."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale.item() if isinstance(new_scale, Tensor) else new_scale)
        elif self._per_optimizer:
            if any(s["found_inf"] for s in self._per_optimizer.values()):
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale *= self._growth_factor
                    self._growth_tracker = 0
        else:
            raise RuntimeError(
                "update(): no inf checks were recorded prior to update (call "
                "step() or unscale_() first)."
            )
        self._per_optimizer = {}

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": False})

    # ---- inspection and checkpoints -------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale factor (1.0 when disabled)."""
        return self._scale if self._enabled else 1.0

    def is_enabled(self) -> bool:
        """Whether loss scaling is on."""
        return self._enabled

    def get_growth_factor(self) -> float:
        """The factor the scale grows by after ``growth_interval`` good steps."""
        return self._growth_factor

    def get_backoff_factor(self) -> float:
        """The factor the scale shrinks by after a step with non-finite gradients."""
        return self._backoff_factor

    def get_growth_interval(self) -> int:
        """How many steps without non-finite gradients before the scale grows."""
        return self._growth_interval

    def state_dict(self) -> dict:
        """The scale and growth state (empty when disabled), as PyTorch's keys."""
        if not self._enabled:
            return {}
        return {
            "scale": self._scale,
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore scale and growth counter from :meth:`state_dict`."""
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError(
                "The source state dict is empty, possibly because it was saved "
                "from a disabled instance of GradScaler."
            )
        self._scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])
