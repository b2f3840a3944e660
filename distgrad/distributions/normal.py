"""``Normal``: Gaussian with ``loc`` and ``scale``."""

from __future__ import annotations

import math

from .. import ops
from ..autograd import Tensor, no_grad
from .distribution import Distribution, check_tensor


class Normal(Distribution):
    """Independent normal variables with means ``loc`` and standard deviations ``scale``."""

    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = ops.broadcast_tensors(
            check_tensor("loc", loc), check_tensor("scale", scale)
        )
        super().__init__(self.loc.shape, (), validate_args)

    @property
    def mean(self) -> Tensor:
        """``loc``."""
        return self.loc

    @property
    def stddev(self) -> Tensor:
        """``scale``."""
        return self.scale

    @property
    def variance(self) -> Tensor:
        """``scale ** 2``."""
        return self.scale.pow(2)

    def rsample(self, sample_shape=()) -> Tensor:
        """``loc + scale * eps`` with standard normal ``eps``: differentiable in both."""
        shape = self._extended_shape(sample_shape)
        eps = ops.randn(*shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * self.scale

    def sample(self, sample_shape=()) -> Tensor:
        """A draw without gradient."""
        with no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value) -> Tensor:
        """The log density at ``value``."""
        var = self.scale**2
        return (
            -((value - self.loc) ** 2) / (2 * var)
            - ops.log(self.scale)
            - math.log(math.sqrt(2 * math.pi))
        )

    def entropy(self) -> Tensor:
        """``0.5 + 0.5 log(2 pi) + log(scale)``."""
        return 0.5 + 0.5 * math.log(2 * math.pi) + ops.log(self.scale)
