"""``distgrad.nn.functional``: the functional API of ``torch.nn.functional`` -- activations,
softmax and friends, losses, convolution, pooling, normalisation, dropout, embedding,
attention and tensor utilities (``pad``, ``one_hot``, ``normalize``...)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..autograd import Tensor
from ..ops import reduction as _reduction
from ..ops.activation import *  # noqa: F401,F403
from ..ops.conv import *  # noqa: F401,F403
from ..ops.dropout import dropout, dropout1d, dropout2d, dropout3d  # noqa: F401
from ..ops.elementwise import sigmoid, tanh  # noqa: F401
from ..ops.embedding import embedding, embedding_bag  # noqa: F401
from ..ops.linalg import linear  # noqa: F401
from ..ops.loss import *  # noqa: F401,F403
from ..ops.normalization import *  # noqa: F401,F403
from ..ops.pool import *  # noqa: F401,F403
from ..ops.shape import pad  # noqa: F401
from ..ops.upsample import *  # noqa: F401,F403


# ---- softmax family -----------------------------------------------------------------------
def _softmax_dim(name, ndim):
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call "
        f"to include dim=X as an argument.",
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim``."""
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim)
    return _reduction.softmax(input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """``log(softmax(x))`` along ``dim``, computed stably."""
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim)
    return _reduction.log_softmax(input, dim, dtype=dtype)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """``softmax(-x)`` along ``dim``."""
    if dim is None:
        dim = _softmax_dim("softmin", input.ndim)
    return _reduction.softmax(-input, dim, dtype=dtype)


def glu(input, dim=-1):
    """Gated linear unit: ``a * sigmoid(b)`` where ``a, b`` are the halves of ``input`` along
    ``dim``."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    n = input.shape[dim]
    if n % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim} is size {n}")
    a, b = input.chunk(2, dim)
    return a * sigmoid(b)


def upsample_nearest(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode="nearest")``."""
    return interpolate(input, size, scale_factor, mode="nearest")  # noqa: F405


def upsample_bilinear(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode="bilinear", align_corners=True)``."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)  # noqa: F405


# ---- tensor utilities ---------------------------------------------------------------------
def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding: ``tensor.shape + (num_classes,)``; ``num_classes=-1`` means
    ``max(tensor) + 1``. Not differentiable."""
    if not isinstance(tensor, Tensor) or tensor.array.dtype.kind not in "iu":
        what = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
        raise RuntimeError(
            f"one_hot is only applicable to index tensor (an integer tensor), got {what}"
        )
    idx = tensor.array
    xp = tensor.device.xp
    if idx.size and int(idx.min()) < 0:
        raise RuntimeError("one_hot: Class values must be non-negative.")
    if num_classes == -1:
        if not idx.size:
            raise RuntimeError("one_hot: Can not infer total number of classes from empty tensor.")
        num_classes = int(idx.max()) + 1
    elif idx.size and int(idx.max()) >= num_classes:
        raise RuntimeError(
            f"one_hot: Class values must be smaller than num_classes "
            f"({num_classes}), got {int(idx.max())}."
        )
    return Tensor((idx[..., None] == xp.arange(num_classes)).astype(xp.int64))


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """``input / max(norm_p(input, dim), eps)``: unit ``p``-norm slices along ``dim``."""
    if p == 2:
        norm = (input * input).sum(dim, keepdim=True).clamp(min=eps * eps).sqrt()
    elif p == math.inf:
        norm = input.abs().amax(dim, keepdim=True).clamp(min=eps)
    else:
        norm = (input.abs() ** p).sum(dim, keepdim=True).clamp(min=eps**p) ** (1.0 / p)
    return input / norm


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Cosine of the angle between ``x1`` and ``x2`` (broadcast) along ``dim``; each norm is
    clamped below at ``eps``."""
    return (normalize(x1, 2, dim, eps) * normalize(x2, 2, dim, eps)).sum(dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``p``-norm of ``x1 - x2 + eps`` over the last dim."""
    d = (x1 - x2 + eps).abs()
    if p == math.inf:
        return d.amax(-1, keepdim=keepdim)
    return (d**p).sum(-1, keepdim=keepdim) ** (1.0 / p)


# ---- attention ----------------------------------------------------------------------------
def _check_attention(query, key, value, attn_mask, enable_gqa):
    op = "scaled_dot_product_attention"
    if query.dtype != key.dtype or query.dtype != value.dtype:
        raise RuntimeError(
            f"Expected query, key, and value to have the same dtype, but got query.dtype: "
            f"{query.dtype} key.dtype: {key.dtype} and value.dtype: {value.dtype} instead."
        )
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise RuntimeError(
            f"{op}: query, key and value must have at least 2 dims (..., L, E), got shapes "
            f"{list(query.shape)}, {list(key.shape)} and {list(value.shape)}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise RuntimeError(
            f"{op}: query's last dim ({query.shape[-1]}) must equal key's ({key.shape[-1]}); "
            f"got query of shape {list(query.shape)} and key of shape {list(key.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise RuntimeError(
            f"{op}: key and value must have the same sequence length, got key of shape "
            f"{list(key.shape)} and value of shape {list(value.shape)}"
        )
    if enable_gqa and query.ndim >= 3 and query.shape[-3] % key.shape[-3]:
        raise RuntimeError(
            f"{op}: with enable_gqa the query heads ({query.shape[-3]}) must be a multiple "
            f"of the key/value heads ({key.shape[-3]})"
        )
    if attn_mask is not None:
        scores = (*query.shape[:-1], key.shape[-2])
        try:
            full = np.broadcast_shapes(tuple(attn_mask.shape), scores)
        except ValueError:
            full = None
        if full != scores:
            raise RuntimeError(
                f"{op}: attn_mask of shape {list(attn_mask.shape)} does not broadcast to the "
                f"attention scores' shape {list(scores)} (..., L, S)"
            )
        if attn_mask.dtype.name != "bool" and attn_mask.dtype != query.dtype:
            raise RuntimeError(
                f"Expected attn_mask dtype to be bool or float or to match query dtype, but "
                f"got attn_mask.dtype: {attn_mask.dtype} and query.dtype: {query.dtype} instead."
            )


def _repeat_heads(x, repeats):
    """``(..., Hkv, S, D)`` -> ``(..., Hkv * repeats, S, D)``, each head repeated in place."""
    if repeats == 1:
        return x
    shape = tuple(x.shape)
    x = x.unsqueeze(-3).expand(*shape[:-2], repeats, *shape[-2:])
    return x.reshape(*shape[:-3], shape[-3] * repeats, *shape[-2:])


def scaled_dot_product_attention(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
):
    """``softmax(query @ key^T * scale + mask) @ value`` over the last two dims (batch dims
    broadcast). ``attn_mask`` is boolean (True = attend) or added to the scores;
    ``is_causal`` masks out keys after each query; ``scale`` defaults to
    ``1 / sqrt(query.size(-1))``; ``enable_gqa`` repeats key/value heads to the query's
    (grouped-query attention). Composed of differentiable ops."""
    if is_causal and attn_mask is not None:
        raise RuntimeError(
            "scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True"
        )
    _check_attention(query, key, value, attn_mask, enable_gqa)
    if enable_gqa and query.ndim >= 3:
        key = _repeat_heads(key, query.shape[-3] // key.shape[-3])
        value = _repeat_heads(value, query.shape[-3] // value.shape[-3])
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        xp = query.device.xp
        length, source = query.shape[-2], key.shape[-2]
        attn_mask = Tensor(xp.tril(xp.ones((length, source), dtype=bool)))
    if attn_mask is not None:
        if attn_mask.dtype.name == "bool":
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask
    weights = _reduction.softmax(scores, -1)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p)
    return weights @ value
