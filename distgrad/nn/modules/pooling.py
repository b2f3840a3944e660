"""Pooling: ``MaxPool1d/2d``, ``AvgPool1d/2d``, ``AdaptiveAvgPool1d/2d``,
``AdaptiveMaxPool1d/2d``. Each family is one base class holding the settings; the 1-d and
2-d modules differ only in the functional they call (as PyTorch's ``_MaxPoolNd`` etc.)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import functional as F
from ..module import Module

__all__ = [
    "MaxPool1d",
    "MaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
]


class _MaxPoolNd(Module):
    _pool: Callable[..., Any] = staticmethod(F.max_pool2d)

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False
    ):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, input):
        """The pooling functional with the module's settings."""
        return self._pool(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def extra_repr(self):
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class _AvgPoolNd(Module):
    _pool: Callable[..., Any] = staticmethod(F.avg_pool2d)

    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input):
        """The pooling functional with the module's settings."""
        return self._pool(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
        )

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptiveAvgPoolNd(Module):
    _pool: Callable[..., Any] = staticmethod(F.adaptive_avg_pool2d)

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        """The pooling functional with the module's ``output_size``."""
        return self._pool(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class _AdaptiveMaxPoolNd(Module):
    _pool: Callable[..., Any] = staticmethod(F.adaptive_max_pool2d)

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input):
        """The pooling functional with the module's settings."""
        return self._pool(input, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class MaxPool2d(_MaxPoolNd):
    """Max over sliding windows of ((N,) C, H, W) (``F.max_pool2d``)."""


class MaxPool1d(_MaxPoolNd):
    """Max over sliding windows of ((N,) C, L) (``F.max_pool1d``)."""

    _pool = staticmethod(F.max_pool1d)


class AvgPool2d(_AvgPoolNd):
    """Mean over sliding windows of ((N,) C, H, W) (``F.avg_pool2d``)."""


class AvgPool1d(_AvgPoolNd):
    """Mean over sliding windows of ((N,) C, L) (``F.avg_pool1d``)."""

    _pool = staticmethod(F.avg_pool1d)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average ((N,) C, H, W) over adaptive bins giving ``output_size``."""


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average ((N,) C, L) over ``output_size`` adaptive bins."""

    _pool = staticmethod(F.adaptive_avg_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max of ((N,) C, H, W) over adaptive bins giving ``output_size`` (and the winners' flat
    indices with ``return_indices``)."""


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max of ((N,) C, L) over ``output_size`` adaptive bins."""

    _pool = staticmethod(F.adaptive_max_pool1d)
