"""``Dropout`` (and the channel-wise ``Dropout1d/2d/3d``), ``Embedding``, ``EmbeddingBag``."""

from __future__ import annotations

from ... import ops
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Embedding", "EmbeddingBag"]


class Dropout(Module):
    """Zeroes elements with probability ``p`` in training and scales the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout1d(Dropout):
    """Zeroes whole channels of ``(N, C, L)`` inputs with probability ``p`` in training."""

    def forward(self, input):
        """``F.dropout1d(input, p, training)``."""
        return F.dropout1d(input, self.p, self.training)


class Dropout2d(Dropout):
    """Zeroes whole channels of ``(N, C, H, W)`` inputs with probability ``p`` in training."""

    def forward(self, input):
        """``F.dropout2d(input, p, training)``."""
        return F.dropout2d(input, self.p, self.training)


class Dropout3d(Dropout):
    """Zeroes whole channels of ``(N, C, D, H, W)`` inputs with probability ``p`` in
    training."""

    def forward(self, input):
        """``F.dropout3d(input, p, training)``."""
        return F.dropout3d(input, self.p, self.training)


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim`` (N(0, 1) init;
    the ``padding_idx`` row starts at zero and gets no gradient)."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx=None,
        device=None,
        dtype=None,
        _weight=None,
    ):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"padding_idx {padding_idx} must be within num_embeddings ({num_embeddings})"
                )
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = (
            num_embeddings,
            embedding_dim,
            padding_idx,
        )
        if _weight is None:
            self.weight = Parameter(
                ops.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
            )
            self.reset_parameters()
        else:
            self.weight = Parameter(_weight)

    def reset_parameters(self) -> None:
        """Draw the weights again from N(0, 1) (the padding row zero)."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            from ...autograd import no_grad

            with no_grad():
                self.weight[self.padding_idx] = 0.0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None):
        """An Embedding whose weight is ``embeddings`` (frozen unless ``freeze=False``)."""
        rows, cols = embeddings.shape
        module = cls(rows, cols, padding_idx=padding_idx, _weight=embeddings.detach().clone())
        module.weight.requires_grad_(not freeze)
        return module

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class EmbeddingBag(Module):
    """Sums, means or maxima of bags of embeddings without materialising each bag's rows as
    a module output (``F.embedding_bag``); ``weight`` is N(0, 1) as PyTorch's."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm=None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight=None,
        include_last_offset: bool = False,
        padding_idx=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if mode not in ("sum", "mean", "max"):
            raise ValueError("mode has to be one of sum, mean or max")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise AssertionError("padding_idx must be within num_embeddings")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.max_norm, self.norm_type, self.mode = max_norm, norm_type, mode
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self.include_last_offset, self.padding_idx = include_last_offset, padding_idx
        if _weight is None:
            self.weight = Parameter(
                ops.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
            )
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise AssertionError(
                    "Shape of weight does not match num_embeddings and embedding_dim"
                )
            self.weight = Parameter(_weight)

    def reset_parameters(self) -> None:
        """N(0, 1), the ``padding_idx`` row zero."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            from ...autograd import no_grad

            with no_grad():
                self.weight[self.padding_idx] = 0.0

    def forward(self, input, offsets=None, per_sample_weights=None):
        """``F.embedding_bag`` with the module's settings."""
        return F.embedding_bag(
            input,
            self.weight,
            offsets,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.mode,
            self.sparse,
            per_sample_weights,
            self.include_last_offset,
            self.padding_idx,
        )

    @classmethod
    def from_pretrained(
        cls,
        embeddings,
        freeze: bool = True,
        max_norm=None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        include_last_offset: bool = False,
        padding_idx=None,
    ):
        """An ``EmbeddingBag`` holding a copy of ``embeddings`` (frozen unless told)."""
        rows, cols = embeddings.shape
        module = cls(
            rows,
            cols,
            max_norm,
            norm_type,
            scale_grad_by_freq,
            mode,
            sparse,
            embeddings.detach().clone(),
            include_last_offset,
            padding_idx,
        )
        module.weight.requires_grad_(not freeze)
        return module

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
