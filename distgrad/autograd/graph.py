"""What code running inside a backward (hooks, DataParallel) may ask of the engine."""

from typing import NamedTuple

from . import function as _function
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
    "saved_tensors_hooks",
    "save_on_cpu",
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


class saved_tensors_hooks:
    """Context manager (PyTorch's ``torch.autograd.graph.saved_tensors_hooks``): while active,
    every tensor an op saves for backward (built-in ops and user ``Function``s alike) is
    passed to ``pack_hook(tensor)`` when it is saved and the result is kept instead;
    ``unpack_hook(packed)`` must give back the tensor to use when backward needs it. Nested
    contexts: the innermost one packs. The hooks must not change their input in place.
    Values saved while the context is active stay packed after it exits.

    One difference from PyTorch, on purpose: when ``unpack_hook`` gives back the saved tensor
    itself (or a tensor sharing its version counter) and that tensor was changed in place
    after it was saved, backward raises the usual "modified by an inplace operation" error;
    PyTorch skips the check under hooks and computes a wrong gradient silently."""

    def __init__(self, pack_hook, unpack_hook):
        self.pack_hook = pack_hook
        self.unpack_hook = unpack_hook

    def __enter__(self):
        _function._saved_hooks.append((self.pack_hook, self.unpack_hook))
        return self

    def __exit__(self, *exc) -> None:
        _function._saved_hooks.pop()


class save_on_cpu(saved_tensors_hooks):
    """Keep tensors saved for backward in host memory while active (PyTorch's
    ``torch.autograd.graph.save_on_cpu``); backward moves each back to its device. Tensors
    already on the CPU are kept as they are. ``pin_memory`` is accepted for PyTorch's
    signature; the host copy is an ordinary one here."""

    def __init__(self, pin_memory: bool = False, device_type: str = "cuda"):
        self.pin_memory = pin_memory

        def pack_to_cpu(tensor):
            return tensor.device, tensor.cpu()

        def unpack_from_cpu(packed):
            device, tensor = packed
            return tensor.to(device)

        super().__init__(pack_to_cpu, unpack_from_cpu)
