"""``Bernoulli``: 0 or 1 with probability ``probs`` (or ``sigmoid(logits)``) of 1."""

from __future__ import annotations

from .. import ops
from ..autograd import Tensor, no_grad
from ..backend.dtypes import float32
from ..ops.loss import binary_cross_entropy_with_logits as _bce_logits
from .distribution import Distribution, check_tensor


class Bernoulli(Distribution):
    """Independent Bernoulli variables (exactly one of ``probs`` or ``logits``)."""

    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        if probs is not None:
            self.probs = check_tensor("probs", probs)
            eps = 1e-7 if self.probs.dtype == float32 else 1e-15
            p = self.probs.clamp(eps, 1 - eps)
            self.logits = ops.log(p) - ops.log1p(-p)
        else:
            self.logits = check_tensor("logits", logits)
            self.probs = ops.sigmoid(self.logits)
        super().__init__(self.probs.shape, (), validate_args)

    @property
    def mean(self) -> Tensor:
        """``probs``."""
        return self.probs

    def sample(self, sample_shape=()) -> Tensor:
        """0./1. draws of shape ``sample_shape + batch_shape`` (the probs' dtype)."""
        shape = self._extended_shape(sample_shape)
        with no_grad():
            return (ops.rand(*shape, dtype=self.probs.dtype) < self.probs.expand(*shape)).to(
                self.probs.dtype
            )

    def log_prob(self, value) -> Tensor:
        """``value * log p + (1 - value) * log(1 - p)``, computed stably from the logits."""
        value = value if isinstance(value, Tensor) else ops.tensor(value, dtype=self.logits.dtype)
        logits, value = ops.broadcast_tensors(self.logits, value.to(self.logits.dtype))
        return -_bce_logits(logits, value, reduction="none")

    def entropy(self) -> Tensor:
        """The entropy of each variable."""
        return _bce_logits(self.logits, self.probs, reduction="none")
