"""Dropout: during training, zero elements (or whole channels) at random and scale the rest by
``1 / (1 - p)`` (inverted dropout), so evaluation needs no rescaling.

Masks are drawn from the seeded host stream (``distgrad.manual_seed``) and copied to the
tensor's device, so a seed gives the same masks on every device."""

from __future__ import annotations

import warnings

import numpy as np

from ..autograd import Op
from ..backend.random import default_generator
from ._helpers import apply_inplace
from .conversion import move_array

__all__ = ["dropout", "dropout1d", "dropout2d", "dropout3d"]


class Dropout(Op):
    """``x * mask``; the mask (0 or ``1 / (1 - p)``, broadcast over ``x``) is a constant."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None


def _mask(shape, p, dtype, device):
    keep = default_generator.numpy.random(shape, dtype=np.float32) >= p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return move_array(np.multiply(keep, scale, dtype=dtype), device)


def _dropout(op, input, p, training, inplace, mask_shape):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    mask = _mask(mask_shape, p, input.array.dtype, input.device)
    if inplace:
        return apply_inplace(input, op + "_", lambda s: Dropout.apply(s, mask))
    return Dropout.apply(input, mask)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` (when ``training``), scaling the others by
    ``1 / (1 - p)``."""
    return _dropout("dropout", input, p, training, inplace, input.shape)


def _channel_dropout(op, spatial, input, p, training, inplace):
    """Zero whole channels: the mask has the input's batch and channel dims, 1 elsewhere."""
    if input.ndim not in (spatial + 1, spatial + 2):
        raise RuntimeError(
            f"{op}: expected a {spatial + 1}-D (unbatched) or {spatial + 2}-D "
            f"(batched) input, got one of shape {list(input.shape)}"
        )
    shape = input.shape[: input.ndim - spatial] + (1,) * spatial
    return _dropout(op, input, p, training, inplace, shape)


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Channel dropout for ``(N, C, L)`` or ``(C, L)`` inputs."""
    return _channel_dropout("dropout1d", 1, input, p, training, inplace)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Channel dropout for ``(N, C, H, W)`` or ``(C, H, W)`` inputs. A 2-D input is
    accepted with PyTorch's deprecation warning and dropped element by element, as there."""
    if input.ndim == 2:
        warnings.warn(
            "dropout2d: Received a 2-D input to dropout2d, which is deprecated and will result "
            "in an error in a future release. To retain the behavior and silence this warning, "
            "please use dropout instead.",
            UserWarning,
            stacklevel=2,
        )
        return dropout(input, p, training, inplace)
    return _channel_dropout("dropout2d", 2, input, p, training, inplace)


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Channel dropout for ``(N, C, D, H, W)`` or ``(C, D, H, W)`` inputs."""
    return _channel_dropout("dropout3d", 3, input, p, training, inplace)
