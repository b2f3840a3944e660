"""The base class of distgrad's distributions."""

from __future__ import annotations

from .. import ops
from ..autograd import Tensor


class Distribution:
    """A probability distribution with a ``batch_shape`` (independent distributions) and an
    ``event_shape`` (the shape of one draw)."""

    has_rsample = False

    def __init__(self, batch_shape=(), event_shape=(), validate_args=None):
        self._batch_shape = tuple(batch_shape)
        self._event_shape = tuple(event_shape)

    @property
    def batch_shape(self) -> tuple:
        """The shape over which the parameters are batched."""
        return self._batch_shape

    @property
    def event_shape(self) -> tuple:
        """The shape of a single sample."""
        return self._event_shape

    def _extended_shape(self, sample_shape=()) -> tuple:
        return tuple(sample_shape) + self._batch_shape + self._event_shape

    def sample(self, sample_shape=()) -> Tensor:
        """A sample (no gradient), of shape ``sample_shape + batch_shape + event_shape``."""
        raise NotImplementedError

    def rsample(self, sample_shape=()) -> Tensor:
        """A reparameterized sample (differentiable in the parameters)."""
        raise NotImplementedError(f"{type(self).__name__} does not support rsample")

    def log_prob(self, value) -> Tensor:
        """The log of the probability (density) of ``value``."""
        raise NotImplementedError

    def entropy(self) -> Tensor:
        """The entropy of each distribution in the batch."""
        raise NotImplementedError

    @property
    def mean(self) -> Tensor:
        """The mean of each distribution in the batch."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def logits_to_probs(logits: Tensor, is_binary: bool = False) -> Tensor:
    """Probabilities from logits: sigmoid for a binary variable, else softmax over the last
    dimension."""
    return ops.sigmoid(logits) if is_binary else ops.softmax(logits, -1)


def check_tensor(name: str, value) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (int, float)):
        return ops.tensor(float(value))
    raise TypeError(f"{name} must be a Tensor or a number, got {type(value).__name__}")
