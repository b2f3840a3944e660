"""Padding layers: ``ReflectionPad1d/2d``, ``ReplicationPad1d/2d``, ``ZeroPad1d/2d``,
``ConstantPad1d/2d``, ``CircularPad1d/2d``: modules around ``functional.pad``."""

from __future__ import annotations

from .. import functional as F
from ..module import Module

__all__ = [
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ZeroPad1d",
    "ZeroPad2d",
    "ConstantPad1d",
    "ConstantPad2d",
    "CircularPad1d",
    "CircularPad2d",
]


class _Pad(Module):
    mode = "constant"
    dims = 1

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        if isinstance(padding, int):
            padding = (padding,) * (2 * self.dims)
        padding = tuple(padding)
        if len(padding) != 2 * self.dims or not all(isinstance(p, int) for p in padding):
            raise TypeError(
                f"{type(self).__name__}: padding must be an int or a tuple of "
                f"{2 * self.dims} ints, got {padding!r}"
            )
        self.padding, self.value = padding, value

    def forward(self, input):
        if self.mode == "constant":
            return F.pad(input, self.padding, "constant", self.value)
        return F.pad(input, self.padding, self.mode)

    def extra_repr(self) -> str:
        return f"{self.padding}" + (f", value={self.value}" if self.mode == "constant" else "")


def _pad_class(name: str, mode: str, dims: int, constant: bool = False):
    side = "(left, right)" if dims == 1 else "(left, right, top, bottom)"
    doc = f"Pads the last {dims} dimension(s) in '{mode}' mode; ``padding`` is an int or {side}."

    def init_constant(self, padding, value: float):
        _Pad.__init__(self, padding, value)

    def init(self, padding):
        _Pad.__init__(self, padding, 0.0)

    body = {"mode": mode, "dims": dims, "__doc__": doc}
    return type(name, (_Pad,), {**body, "__init__": init_constant if constant else init})


ReflectionPad1d = _pad_class("ReflectionPad1d", "reflect", 1)
ReflectionPad2d = _pad_class("ReflectionPad2d", "reflect", 2)
ReplicationPad1d = _pad_class("ReplicationPad1d", "replicate", 1)
ReplicationPad2d = _pad_class("ReplicationPad2d", "replicate", 2)
ZeroPad1d = _pad_class("ZeroPad1d", "constant", 1)
ZeroPad2d = _pad_class("ZeroPad2d", "constant", 2)
ConstantPad1d = _pad_class("ConstantPad1d", "constant", 1, constant=True)
ConstantPad2d = _pad_class("ConstantPad2d", "constant", 2, constant=True)
CircularPad1d = _pad_class("CircularPad1d", "circular", 1)
CircularPad2d = _pad_class("CircularPad2d", "circular", 2)
for _cls in (
    ReflectionPad1d,
    ReflectionPad2d,
    ReplicationPad1d,
    ReplicationPad2d,
    ZeroPad1d,
    ZeroPad2d,
    ConstantPad1d,
    ConstantPad2d,
    CircularPad1d,
    CircularPad2d,
):
    _cls.__module__ = __name__
