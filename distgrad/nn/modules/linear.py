"""``Identity``, ``Linear``, ``Bilinear``-free basics, ``Flatten``/``Unflatten``."""

from __future__ import annotations

import math

from ... import ops
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Identity", "Linear", "Flatten", "Unflatten"]


def _empty(*shape, device=None, dtype=None):
    return ops.empty(*shape, device=device, dtype=dtype)


def reset_weight_and_bias(weight, bias, fan_in: int) -> None:
    """PyTorch's default for Linear and Conv layers: kaiming-uniform weight with a=sqrt(5),
    bias uniform in +-1/sqrt(fan_in)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


class Identity(Module):
    """Returns its input unchanged (accepts and ignores constructor arguments)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """``y = x @ W.T + b`` with ``W`` of shape (out_features, in_features), initialised as
    PyTorch does (kaiming-uniform with a=sqrt(5), bias uniform in ±1/sqrt(fan_in))."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(_empty(out_features, in_features, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(_empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw weight and bias again from PyTorch's default U(-1/sqrt(in_features), 1/sqrt(in_features))."""
        reset_weight_and_bias(self.weight, self.bias, self.in_features)

    def forward(self, input):
        if input.shape[-1:] != (self.in_features,):
            raise RuntimeError(
                f"Linear: input's last dimension must be in_features="
                f"{self.in_features}, got input of shape {list(input.shape)}"
            )
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        return input.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
