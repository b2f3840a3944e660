"""The autograd layer: ``Tensor``, ``Function``, the backward engine, grad modes and checks."""

from . import graph
from .anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from .engine import backward, grad
from .function import BackwardNode, Function, Op, RemovableHandle, once_differentiable
from .grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .tensor import Tensor

__all__ = [
    "Tensor",
    "Op",
    "Function",
    "BackwardNode",
    "once_differentiable",
    "backward",
    "grad",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "inference_mode",
    "is_grad_enabled",
    "is_inference_mode_enabled",
    "detect_anomaly",
    "set_detect_anomaly",
    "is_anomaly_enabled",
    "gradcheck",
    "gradgradcheck",
    "GradcheckError",
    "graph",
    "RemovableHandle",
]


def Variable(data, requires_grad: bool = False, volatile: bool = False):  # noqa: N802
    """PyTorch's deprecated ``autograd.Variable(t, requires_grad=...)``: since PyTorch 0.4 a
    Variable is a Tensor, so this returns ``data`` itself (``requires_grad`` set when True)."""
    if not isinstance(data, Tensor):
        raise TypeError(f"Variable data has to be a tensor, but got {type(data).__name__}")
    if requires_grad:
        data.requires_grad_(True)
    return data


__all__.append("Variable")
