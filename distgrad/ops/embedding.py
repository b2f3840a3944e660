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
        _scatter_add_rows(xp, gw, rows, grad_rows)
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return None, gw.reshape(ctx.weight_shape), None, None


# More repeats of one row than this: add.at itself (one Python-level round per repeat).
_MAX_ROUNDS = 64


def _scatter_add_rows(xp, out, rows, values) -> None:
    """``out[rows[i]] += values[i]`` for every ``i`` in order: ``add.at``'s result bit for bit,
    in rounds of distinct rows (round ``k`` adds the ``k``-th occurrence of every row) that are
    each one vectorised indexed addition; ~10x faster than numpy's ``add.at`` for a batch of
    token ids."""
    n = rows.size
    if n == 0:
        return
    order = xp.argsort(rows, kind="stable")  # a row's occurrences stay in their order
    ordered = rows[order]
    first = xp.empty(n, dtype=bool)
    first[0] = True
    xp.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = xp.flatnonzero(first)
    # the occurrence number of each sorted entry: its position minus its run's start
    rank = xp.arange(n) - starts[xp.cumsum(first) - 1]
    rounds = int(rank.max()) + 1
    if rounds > _MAX_ROUNDS or int(ordered[0]) < 0:  # (a negative index aliases another)
        xp.add.at(out, rows, values)
        return
    for k in range(rounds):
        pick = order[rank == k]
        out[rows[pick]] += values[pick]


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


def _bags(op, input, offsets, include_last_offset, per_sample_weights):
    """``(index (B, L), mask (B, L), weights (B, L) or None)``: every bag padded to the
    longest; padded slots point at row 0 and are masked out."""
    import numpy as np

    if input.ndim == 2:
        if offsets is not None:
            raise ValueError(
                "if input is 2D, then offsets has to be None, as input is treated is a "
                "mini-batch of fixed length sequences. However, found offsets of type "
                f"{type(offsets).__name__}"
            )
        idx = input
        mask = np.ones(tuple(input.shape), dtype=bool)
        weights = per_sample_weights
        return idx, mask, weights
    if input.ndim != 1:
        raise ValueError(
            f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}"
        )
    if offsets is None:
        raise ValueError("offsets has to be a 1D Tensor but got None")
    if not isinstance(offsets, Tensor) or offsets.ndim != 1:
        raise ValueError("offsets has to be a 1D Tensor")
    off = np.asarray(offsets.cpu().array).astype(np.int64)
    total = input.shape[0]
    if off.size and off[0] != 0:
        raise RuntimeError(
            f"offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to start "
            f"from position 0. However, got {int(off[0])}"
        )
    if np.any(np.diff(off) < 0) or (off.size and off[-1] > total):
        raise RuntimeError(
            f"{op}: offsets must be non-decreasing and at most the input's length {total}, got "
            f"{off.tolist()}"
        )
    ends = off[1:] if include_last_offset else np.append(off[1:], total)
    starts = off[:-1] if include_last_offset else off
    lengths = ends - starts
    longest = max(int(lengths.max()) if lengths.size else 0, 1)
    pos = starts[:, None] + np.arange(longest)[None, :]
    mask = np.arange(longest)[None, :] < lengths[:, None]
    flat = np.where(mask, pos, total)  # ``total``: one padding slot appended below
    xp = input.device.xp
    ids = Tensor(xp.concatenate([input.array, xp.zeros(1, input.array.dtype)]))
    idx = ids[Tensor(flat).to(input.device)]
    weights = None
    if per_sample_weights is not None:
        from .shape import cat

        zero = Tensor(xp.zeros(1, per_sample_weights.array.dtype))
        padded = cat([per_sample_weights, zero])
        weights = padded[Tensor(flat).to(input.device)]
    return idx, mask, weights


def embedding_bag(
    input,
    weight,
    offsets=None,
    max_norm=None,
    norm_type=2,
    scale_grad_by_freq=False,
    mode="mean",
    sparse=False,
    per_sample_weights=None,
    include_last_offset=False,
    padding_idx=None,
):
    """Sums, means or maxima of bags of embeddings, as ``torch.nn.functional.embedding_bag``:
    ``input`` (B, L) holds B bags of L indices, or is 1-D with ``offsets`` giving where each
    bag starts. Entries equal to ``padding_idx`` are left out (and not counted in the mean);
    ``per_sample_weights`` scale the entries (``mode="sum"`` only); an empty bag gives zeros."""
    import numpy as np

    op = "embedding_bag"
    if mode not in ("sum", "mean", "max"):
        raise ValueError("mode has to be one of sum, mean or max")
    if not isinstance(input, Tensor) or input.array.dtype.kind not in "iu":
        what = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(
            f"Expected tensor for argument #1 'indices' to have one of the following scalar "
            f"types: Long, Int; but got {what} instead"
        )
    if per_sample_weights is not None:
        if mode != "sum":
            raise NotImplementedError(
                "embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                f"supported for mode='sum' (got mode='{mode}'). Please open a feature request "
                "on GitHub."
            )
        if tuple(per_sample_weights.shape) != tuple(input.shape):
            raise ValueError(
                f"embedding_bag: If per_sample_weights ({list(per_sample_weights.shape)}) is not "
                f"None, then it must have the same shape as the input ({list(input.shape)})"
            )
    idx, mask, weights = _bags(op, input, offsets, include_last_offset, per_sample_weights)
    if padding_idx is not None:
        num = weight.shape[0]
        if not -num <= padding_idx < num:
            raise ValueError(f"padding_idx must be within the number of embeddings ({num})")
        padding_idx %= num
        mask = mask & (np.asarray(idx.cpu().array) != padding_idx)
    rows = embedding(idx, weight, None, max_norm, norm_type, scale_grad_by_freq)
    xp = weight.device.xp
    keep = Tensor(xp.asarray(mask))
    counts = mask.sum(1)
    if mode == "max":
        empty = Tensor(xp.asarray(counts == 0)[:, None])
        best = rows.masked_fill(~keep[..., None], -float("inf")).amax(1)
        return best.masked_fill(empty, 0.0)
    factor = Tensor(xp.asarray(mask, dtype=weight.array.dtype))
    if weights is not None:
        factor = factor * weights
    total = (rows * factor[..., None]).sum(1)
    if mode == "mean":
        total = total / Tensor(xp.asarray(np.maximum(counts, 1)[:, None], dtype=weight.array.dtype))
    return total


__all__ += ["embedding_bag"]
