"""``Categorical``: one of K categories, from ``probs`` (non-negative, normalized here) or
``logits`` (unnormalized log-probabilities), over the last dimension."""

from __future__ import annotations

from .. import ops
from ..autograd import Tensor, no_grad
from ..backend.dtypes import float32
from .distribution import Distribution, check_tensor


class Categorical(Distribution):
    """A categorical distribution over the last dimension of ``probs`` or ``logits``
    (exactly one of them)."""

    def __init__(self, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        if probs is not None:
            probs = check_tensor("probs", probs)
            if probs.ndim < 1:
                raise ValueError("`probs` parameter must be at least one-dimensional.")
            self.probs = probs / probs.sum(-1, keepdim=True)
            self.logits = ops.log(self.probs.clamp(min=1e-38 if probs.dtype == float32 else 1e-300))
        else:
            logits = check_tensor("logits", logits)
            if logits.ndim < 1:
                raise ValueError("`logits` parameter must be at least one-dimensional.")
            self.logits = logits - ops.logsumexp(logits, -1, keepdim=True)
            self.probs = ops.softmax(logits, -1)
        self._num_events = self.probs.shape[-1]
        super().__init__(self.probs.shape[:-1], (), validate_args)

    @property
    def param_shape(self) -> tuple:
        """The shape of ``probs``."""
        return self.probs.shape

    @property
    def mean(self) -> Tensor:
        """Undefined for categories (NaN), as in PyTorch."""
        return ops.full(self._extended_shape(), float("nan"), dtype=self.probs.dtype)

    def sample(self, sample_shape=()) -> Tensor:
        """Category indices (int64) of shape ``sample_shape + batch_shape``."""
        sample_shape = tuple(sample_shape)
        count = 1
        for n in sample_shape:
            count *= n
        with no_grad():
            flat = self.probs.reshape(-1, self._num_events)
            draws = ops.multinomial(flat, count, replacement=True)  # (batch, count)
            draws = draws.t().reshape(sample_shape + self._batch_shape)
        return draws

    def log_prob(self, value) -> Tensor:
        """``log p(value)`` for category indices ``value`` (broadcast against the batch)."""
        value = value.long() if isinstance(value, Tensor) else ops.tensor(value)
        value = value.unsqueeze(-1)
        shape = ops.broadcast_shapes(value.shape[:-1], self.logits.shape[:-1])
        value = value.expand(*shape, 1)
        logits = self.logits.expand(*shape, self._num_events)
        return ops.gather(logits, -1, value).squeeze(-1)

    def entropy(self) -> Tensor:
        """``-sum p log p`` over the categories."""
        logits = self.logits.clamp(min=-3.4e38 if self.logits.dtype == float32 else -1.7e308)
        return -(logits * self.probs).sum(-1)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        """The category indices ``0..K-1``, shaped to broadcast against the batch."""
        values = ops.arange(self._num_events).reshape((-1,) + (1,) * len(self._batch_shape))
        return values.expand(-1, *self._batch_shape) if expand else values

    def __repr__(self) -> str:
        return f"Categorical(probs: {self.probs.shape})"
