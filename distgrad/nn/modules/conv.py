"""Convolutions: ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d``."""

from __future__ import annotations

import math

from ... import ops
from .. import functional as F
from ..module import Module
from ..parameter import Parameter
from .linear import reset_weight_and_bias

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


class _ConvNd(Module):
    _dims = 2
    _transposed = False

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        output_padding=0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        n = self._dims
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) "
                f"must both be divisible by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise NotImplementedError(
                f"padding_mode={padding_mode!r}: only 'zeros' is "
                f"supported; pad explicitly with F.pad first"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _tuple(kernel_size, n)
        self.stride, self.dilation = _tuple(stride, n), _tuple(dilation, n)
        if min(self.kernel_size + self.stride + self.dilation) <= 0:
            raise ValueError(
                f"{type(self).__name__}: kernel_size, stride and dilation must be "
                f"positive, got kernel_size={self.kernel_size}, "
                f"stride={self.stride}, dilation={self.dilation}"
            )
        self.padding = padding if isinstance(padding, str) else _tuple(padding, n)
        self.output_padding = _tuple(output_padding, n)
        self.padding_mode = padding_mode
        shape = (
            (in_channels, out_channels // groups)
            if self._transposed
            else (out_channels, in_channels // groups)
        ) + self.kernel_size
        self.weight = Parameter(ops.empty(*shape, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(ops.empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_weight_and_bias(
            self.weight, self.bias, self.weight.shape[1] * math.prod(self.kernel_size)
        )

    def _output_padding(self, input, output_size):
        """``output_padding``, or the one giving ``output_size`` (PyTorch's rule)."""
        if output_size is None:
            return self.output_padding
        n = self._dims
        size = list(output_size)[-n:]
        if len(size) != n:
            raise ValueError(
                f"ConvTranspose{n}D: for {input.ndim}D input, output_size must have {n} or "
                f"{n + 2} elements (got {len(list(output_size))})"
            )
        pads = []
        for d in range(n):
            i = input.shape[input.ndim - n + d]
            k, s, p, dil = self.kernel_size[d], self.stride[d], self.padding[d], self.dilation[d]
            smallest = (i - 1) * s - 2 * p + dil * (k - 1) + 1
            largest = smallest + max(s, dil) - 1
            if not smallest <= size[d] <= largest:
                raise ValueError(
                    f"requested an output size of {size}, but valid sizes range from "
                    f"{smallest} to {largest} (for an input of {list(input.shape[2:])})"
                )
            pads.append(size[d] - smallest)
        return tuple(pads)

    def extra_repr(self):
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0,) * self._dims, "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    _dims = 1

    def forward(self, input):
        return F.conv1d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class Conv2d(_ConvNd):
    _dims = 2

    def forward(self, input):
        return F.conv2d(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class ConvTranspose2d(_ConvNd):
    _dims = 2
    _transposed = True

    def forward(self, input, output_size=None):
        return F.conv_transpose2d(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(input, output_size),
            self.groups,
            self.dilation,
        )


class ConvTranspose1d(_ConvNd):
    """The transpose (gradient) of ``Conv1d``: weight ``(in, out // groups, k)``."""

    _dims = 1
    _transposed = True

    def forward(self, input, output_size=None):
        """``F.conv_transpose1d`` with the module's settings (``output_size`` picks the
        output padding, as PyTorch)."""
        return F.conv_transpose1d(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(input, output_size),
            self.groups,
            self.dilation,
        )
