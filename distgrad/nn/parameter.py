"""``nn.Parameter``: a tensor that a Module registers as a learnable parameter."""

from __future__ import annotations

from ..autograd import Tensor

__all__ = ["Parameter"]


class Parameter(Tensor):
    """A leaf tensor (``requires_grad=True`` by default) that becomes a module parameter when
    assigned as an attribute. Shares storage with the tensor it is made from."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            import numpy as np

            array = np.empty((0,), np.float32)
        else:
            array = data.array if isinstance(data, Tensor) else data
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce__(self):
        return (_rebuild_parameter, (Tensor.__reduce__(self), self.requires_grad))


def _rebuild_parameter(tensor_reduce, requires_grad):
    rebuild, args = tensor_reduce
    return Parameter(rebuild(*args), requires_grad=requires_grad)
