"""Embedding lookup: rows of a weight matrix picked by integer indices."""

from __future__ import annotations

from ..autograd import Op, Tensor
from ._helpers import check_same_device

__all__ = ["embedding"]


class Embedding(Op):
    """``weight[idx]``; the weight's gradient scatter-adds the output gradient into the rows
    that were picked (``add.at``), so this backward is not itself differentiable."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, idx, weight, padding_idx, scale_grad_by_freq):
        ctx.save_for_backward(idx)
        ctx.weight_shape = weight.shape
        ctx.padding_idx, ctx.scale_grad_by_freq = padding_idx, scale_grad_by_freq
        return ctx.xp.take(weight, idx, axis=0)

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        xp = ctx.xp
        rows = idx.ravel()
        num = ctx.weight_shape[0]
        grad_rows = g.reshape(rows.size, -1)
        if ctx.scale_grad_by_freq:
            counts = xp.bincount(rows, minlength=num)
            grad_rows = grad_rows / counts[rows][:, None].astype(g.dtype)
        gw = xp.zeros((num, grad_rows.shape[1]), g.dtype)
        xp.add.at(gw, rows, grad_rows)
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return None, gw.reshape(ctx.weight_shape), None, None


def _renorm_(weight, idx, max_norm, norm_type):
    """Scale (in place, no grad) the rows of ``weight`` picked by ``idx`` whose
    ``norm_type``-norm exceeds ``max_norm`` down to norm ``max_norm``."""
    w = weight.array
    xp = weight.device.xp
    rows = xp.unique(idx)
    norms = (xp.abs(w[rows]) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
    scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(w.dtype)
    w[rows] *= scale[:, None]
    weight.bump_version()


def embedding(
    input,
    weight,
    padding_idx=None,
    max_norm=None,
    norm_type=2.0,
    scale_grad_by_freq=False,
    sparse=False,
):
    """Rows of ``weight`` (num_embeddings, embedding_dim) at the integer indices ``input``:
    output shape ``input.shape + (embedding_dim,)``. The ``padding_idx`` row gets no gradient;
    ``max_norm`` renormalises the looked-up rows of ``weight`` in place first."""
    if not isinstance(input, Tensor) or input.array.dtype.kind not in "iu":
        what = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"embedding: expected input to be an integer (index) tensor, got {what}")
    if weight.ndim != 2:
        raise RuntimeError(
            f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
            f"shape {list(weight.shape)}"
        )
    check_same_device("embedding", input, weight)
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported; use sparse=False")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(
                f"embedding: padding_idx ({padding_idx}) must be within num_embeddings ({num})"
            )
        padding_idx %= num
    idx = input.array
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num):
        bad = idx[(idx < 0) | (idx >= num)].ravel()[0]
        raise IndexError(
            f"embedding: index out of range in self: index {int(bad)} for a weight with {num} rows"
        )
    if max_norm is not None:
        _renorm_(weight, idx, max_norm, norm_type)
    return Embedding.apply(input, weight, padding_idx, scale_grad_by_freq)
