"""What code running inside a backward (hooks, DataParallel) may ask of the engine."""

from .engine import is_backward_running, queue_callback, will_execute
from .function import BackwardNode as Node
from .tensor import AccumulateGrad

__all__ = ["Node", "AccumulateGrad", "queue_callback", "will_execute", "is_backward_running"]
