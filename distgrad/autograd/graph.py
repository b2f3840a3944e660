"""What code running inside a backward (hooks, DataParallel) may ask of the engine."""

from typing import NamedTuple

from .engine import is_backward_running, queue_callback, will_execute
from .function import BackwardNode as Node
from .tensor import AccumulateGrad, Tensor

__all__ = [
    "Node",
    "AccumulateGrad",
    "GradientEdge",
    "get_gradient_edge",
    "queue_callback",
    "will_execute",
    "is_backward_running",
]


class GradientEdge(NamedTuple):
    """Where gradients for a tensor flow: ``node`` (its ``grad_fn``, or a leaf's
    ``AccumulateGrad``) and which of the node's outputs it is."""

    node: Node
    output_nr: int


def get_gradient_edge(tensor: Tensor) -> GradientEdge:
    """The edge gradients for ``tensor`` flow into (PyTorch's ``get_gradient_edge``); for a
    leaf that requires grad, its ``AccumulateGrad`` node (made on first use)."""
    return GradientEdge(*tensor._edge())
