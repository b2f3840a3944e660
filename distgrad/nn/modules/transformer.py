"""``MultiheadAttention`` and the Transformer family (``TransformerEncoderLayer``,
``TransformerEncoder``, ``TransformerDecoderLayer``, ``TransformerDecoder``, ``Transformer``),
composed from differentiable ops, with PyTorch's parameter names, masks and call signatures, so
a torch ``state_dict`` loads unchanged and gives the same outputs.

Masks follow PyTorch: a boolean ``attn_mask`` or ``key_padding_mask`` is True where attention
is *not* allowed; a float mask is added to the attention scores. ``is_causal`` is a hint that
the given mask is causal; where PyTorch's ``MultiheadAttention`` raises for ``is_causal``
without a mask, distgrad builds the causal mask itself (a superset: no torch program relies on
the error)."""

from __future__ import annotations

import copy
import math

import numpy as np

from ... import ops
from ...autograd import Tensor
from .. import functional as F
from .. import init
from ..container import ModuleList
from ..module import Module
from ..parameter import Parameter
from .dropout import Dropout
from .linear import Linear
from .normalization import LayerNorm

__all__ = [
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "TransformerDecoderLayer",
    "TransformerDecoder",
    "Transformer",
]


def _is_bool(t) -> bool:
    return t.array.dtype == np.bool_


def _check_mask_dtype(name: str, mask, like) -> None:
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a Tensor or None, got {type(mask).__name__}")
    if not _is_bool(mask) and not mask.is_floating_point():
        raise AssertionError(f"only bool and floating types of {name} are supported")


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention with PyTorch's parameters (``in_proj_weight``
    ``(3E, E)``, or ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when ``kdim`` or
    ``vdim`` differ from ``embed_dim``; ``in_proj_bias``; ``out_proj``) and call signature."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim=None,
        vdim=None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} "
                f"and num_heads={num_heads} instead"
            )
        if embed_dim % num_heads:
            raise AssertionError("embed_dim must be divisible by num_heads")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError(
                "MultiheadAttention: add_bias_kv and add_zero_attn are not supported by distgrad"
            )
        kw = dict(device=device, dtype=dtype)
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        self.add_zero_attn = False
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(ops.empty(3 * embed_dim, embed_dim, **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(ops.empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(ops.empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(ops.empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(ops.empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **kw)
        self.bias_k = self.bias_v = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _projections(self, query, key, value):
        b = self.in_proj_bias
        b_q, b_k, b_v = b.chunk(3) if b is not None else (None, None, None)
        if self._qkv_same_embed_dim:
            if query is key and key is value:  # self-attention: one GEMM
                return F.linear(query, self.in_proj_weight, b).chunk(3, -1)
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
            if key is value:  # attention over one memory: keys and values from one GEMM
                e = self.embed_dim
                w_kv = self.in_proj_weight[e:]
                k, v = F.linear(key, w_kv, None if b is None else b[e:]).chunk(2, -1)
                return F.linear(query, w_q, b_q), k, v
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def _check(self, query, key, value, key_padding_mask, attn_mask):
        """PyTorch's shape checks; returns whether the input is batched."""
        if query.ndim == 3:
            batched = True
            if key.ndim != 3 or value.ndim != 3:
                raise AssertionError(
                    "For batched (3-D) `query`, expected `key` and `value` to be 3-D but found "
                    f"{key.ndim}-D and {value.ndim}-D tensors respectively"
                )
            if key_padding_mask is not None and key_padding_mask.ndim != 2:
                raise AssertionError(
                    "For batched (3-D) `query`, expected `key_padding_mask` to be `None` or 2-D "
                    f"but found {key_padding_mask.ndim}-D tensor instead"
                )
        elif query.ndim == 2:
            batched = False
            if key.ndim != 2 or value.ndim != 2:
                raise AssertionError(
                    "For unbatched (2-D) `query`, expected `key` and `value` to be 2-D but "
                    f"found {key.ndim}-D and {value.ndim}-D tensors respectively"
                )
            if key_padding_mask is not None and key_padding_mask.ndim != 1:
                raise AssertionError(
                    "For unbatched (2-D) `query`, expected `key_padding_mask` to be `None` or "
                    f"1-D but found {key_padding_mask.ndim}-D tensor instead"
                )
        else:
            raise AssertionError(
                "query should be unbatched 2D or batched 3D tensor but received "
                f"{query.ndim}-D query tensor"
            )
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            kind = "batched (3-D)" if batched else "unbatched (2-D)"
            raise AssertionError(
                f"For {kind} `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
                f"{attn_mask.ndim}-D tensor instead"
            )
        _check_mask_dtype("attn_mask", attn_mask, query)
        _check_mask_dtype("key_padding_mask", key_padding_mask, query)
        if query.shape[-1] != self.embed_dim:
            raise AssertionError(
                f"was expecting embedding dimension of {self.embed_dim}, but got {query.shape[-1]}"
            )
        if key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise AssertionError(
                f"expected key of feature size kdim={self.kdim} and value of vdim={self.vdim}, "
                f"got key shape {list(key.shape)} and value shape {list(value.shape)}"
            )
        if key.shape[:-1] != value.shape[:-1]:
            raise AssertionError(
                f"key's sequence and batch dims {list(key.shape[:-1])} do not match value's "
                f"{list(value.shape[:-1])}"
            )
        seq_dim = 1 if (self.batch_first and batched) else 0
        if batched and query.shape[1 - seq_dim] != key.shape[1 - seq_dim]:
            raise AssertionError(
                f"query and key must have the same batch size, got query of shape "
                f"{list(query.shape)} and key of shape {list(key.shape)}"
            )
        return batched

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights: bool = True,
        attn_mask=None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ):
        """``(attn_output, attn_weights)``; ``attn_weights`` is None unless ``need_weights``
        (averaged over heads when ``average_attn_weights``)."""
        batched = self._check(query, key, value, key_padding_mask, attn_mask)
        if not batched:
            query, key, value = (x.unsqueeze(1) for x in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            same_kv = key is value
            same_qk = query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        tgt_len, batch, embed = query.shape
        src_len = key.shape[0]
        if key_padding_mask is not None and tuple(key_padding_mask.shape) != (batch, src_len):
            raise AssertionError(
                f"expecting key_padding_mask shape of {(batch, src_len)}, but got "
                f"{list(key_padding_mask.shape)}"
            )
        if attn_mask is not None:
            want = (
                (tgt_len, src_len)
                if attn_mask.ndim == 2
                else (batch * self.num_heads, tgt_len, src_len)
            )
            if not batched and attn_mask.ndim == 3:
                want = (self.num_heads, tgt_len, src_len)
            if tuple(attn_mask.shape) != want:
                raise RuntimeError(
                    f"The shape of the {attn_mask.ndim}D attn_mask is {list(attn_mask.shape)}, "
                    f"but should be {want}."
                )
        q, k, v = self._projections(query, key, value)

        def heads(x, length):  # (L, N, E) -> (N, H, L, D)
            return x.reshape(length, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        q, k, v = heads(q, tgt_len), heads(k, src_len), heads(v, src_len)
        mask = _combined_mask(
            attn_mask, key_padding_mask, is_causal, tgt_len, src_len, batch, self.num_heads, q
        )
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1)
        if self.dropout > 0.0 and self.training:
            weights = F.dropout(weights, self.dropout, True)
        out = (weights @ v).permute(2, 0, 1, 3).reshape(tgt_len, batch, embed)
        out = self.out_proj(out)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = weights.mean(dim=1) if average_attn_weights else weights
        return out, (weights if batched else weights.squeeze(0))


def _combined_mask(attn_mask, key_padding_mask, is_causal, tgt_len, src_len, batch, heads, like):
    """An additive float mask broadcastable to (N, H, L, S): -inf where attention is
    forbidden. Boolean masks are True where attention is NOT allowed (PyTorch's convention).
    Masks are constants (no gradient flows into them), as in PyTorch."""
    xp = like.device.xp
    dtype = like.array.dtype
    total = None
    if is_causal and attn_mask is None:
        attn_mask = Tensor(xp.triu(xp.ones((tgt_len, src_len), dtype=bool), 1))
    for m, shape in ((attn_mask, None), (key_padding_mask, (batch, 1, 1, src_len))):
        if m is None:
            continue
        arr = m.array
        if arr.dtype == np.bool_:
            arr = xp.where(arr, -xp.inf, 0.0).astype(dtype)
        if shape is not None:
            arr = arr.reshape(shape)
        elif arr.ndim == 3:  # (N*H, L, S)
            arr = arr.reshape(batch, heads, tgt_len, src_len)
        total = arr if total is None else total + arr
    return None if total is None else Tensor(total.astype(dtype, copy=False))


def _activation(activation):
    """A string (``"relu"``/``"gelu"``) or a callable, as PyTorch's ``_get_activation_fn``."""
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    if not callable(activation):
        raise TypeError(f"activation must be a string or a callable, got {activation!r}")
    return activation


def _clones(module, n):
    return ModuleList([copy.deepcopy(module) for _ in range(n)])


def _causal_hint(is_causal, mask, size) -> bool:
    """PyTorch's ``_detect_is_causal_mask``: the hint given, else whether ``mask`` is the
    square subsequent mask of ``size``."""
    if is_causal is not None:
        return bool(is_causal)
    if mask is None or tuple(mask.shape) != (size, size):
        return False
    causal = np.triu(np.ones((size, size), dtype=bool), 1)
    arr = np.asarray(mask.cpu().array)
    if arr.dtype == np.bool_:
        return bool((arr == causal).all())
    return bool((arr == np.where(causal, -np.inf, 0.0)).all())


class _Layer(Module):
    """What the encoder and decoder layers share: self-attention, optional attention over a
    memory, the feed-forward block and their norms/dropouts, registered in PyTorch's order
    (so ``parameters()`` and ``state_dict()`` list them as torch does)."""

    def __init__(
        self,
        d_model,
        nhead,
        dim_feedforward,
        dropout,
        activation,
        layer_norm_eps,
        batch_first,
        norm_first,
        bias,
        device,
        dtype,
        cross_attention: bool,
    ):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout, bias, batch_first=batch_first, **kw
        )
        if cross_attention:
            self.multihead_attn = MultiheadAttention(
                d_model, nhead, dropout, bias, batch_first=batch_first, **kw
            )
        self.linear1 = Linear(d_model, dim_feedforward, bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias, **kw)
        self.norm_first = norm_first
        norms = 3 if cross_attention else 2
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", LayerNorm(d_model, layer_norm_eps, bias=bias, **kw))
        for i in range(1, norms + 1):
            setattr(self, f"dropout{i}", Dropout(dropout))
        self._ff_dropout = f"dropout{norms}"
        self.activation = _activation(activation)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return self.dropout1(
            self._attend(self.self_attn, x, x, attn_mask, key_padding_mask, is_causal)
        )

    def _ff_block(self, x):
        out = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return getattr(self, self._ff_dropout)(out)

    @staticmethod
    def _attend(attn, x, mem, attn_mask, key_padding_mask, is_causal):
        out, _ = attn(
            x,
            mem,
            mem,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )
        return out


class TransformerEncoderLayer(_Layer):
    """Self-attention + feed-forward block (post-norm by default, ``norm_first`` for pre-norm),
    as ``torch.nn.TransformerEncoderLayer``; ``activation`` is ``"relu"``, ``"gelu"`` or a
    callable."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__(
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            layer_norm_eps,
            batch_first,
            norm_first,
            bias,
            device,
            dtype,
            cross_attention=False,
        )

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        """``src`` through the block; masks as ``MultiheadAttention``'s."""
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x


class TransformerEncoder(Module):
    """A stack of ``num_layers`` deep copies of ``encoder_layer``, then ``norm`` if given.
    (``enable_nested_tensor`` and ``mask_check`` are accepted for compatibility; there is no
    nested-tensor fast path.)"""

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm=None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers, self.norm = num_layers, norm
        self.enable_nested_tensor, self.mask_check = enable_nested_tensor, mask_check

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        """``src`` through every layer (and ``norm``)."""
        seq_dim = 1 if self.layers and self.layers[0].self_attn.batch_first else 0
        causal = _causal_hint(
            is_causal, mask, src.shape[seq_dim] if src.ndim == 3 else src.shape[0]
        )
        for layer in self.layers:
            src = layer(
                src, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=causal
            )
        return src if self.norm is None else self.norm(src)


class TransformerDecoderLayer(_Layer):
    """Self-attention, attention over the encoder's ``memory``, feed-forward (post-norm by
    default, ``norm_first`` for pre-norm), as ``torch.nn.TransformerDecoderLayer``."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__(
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            activation,
            layer_norm_eps,
            batch_first,
            norm_first,
            bias,
            device,
            dtype,
            cross_attention=True,
        )

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ):
        """``tgt`` through the block, attending to ``memory``."""
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(
                self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal
            )
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(
                x
                + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            )
            x = self.norm3(x + self._ff_block(x))
        return x

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        attended = self._attend(self.multihead_attn, x, mem, attn_mask, key_padding_mask, is_causal)
        return self.dropout2(attended)


class TransformerDecoder(Module):
    """A stack of ``num_layers`` deep copies of ``decoder_layer``, then ``norm`` if given."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers, self.norm = num_layers, norm

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=None,
        memory_is_causal: bool = False,
    ):
        """``tgt`` through every layer (and ``norm``), each attending to ``memory``."""
        seq_dim = 1 if self.layers and self.layers[0].self_attn.batch_first else 0
        size = tgt.shape[seq_dim] if tgt.ndim == 3 else tgt.shape[0]
        causal = _causal_hint(tgt_is_causal, tgt_mask, size)
        x = tgt
        for layer in self.layers:
            x = layer(
                x,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=causal,
                memory_is_causal=memory_is_causal,
            )
        return x if self.norm is None else self.norm(x)


class Transformer(Module):
    """The encoder-decoder Transformer of "Attention Is All You Need", as
    ``torch.nn.Transformer`` (same submodule and parameter names; weights of dim > 1
    xavier-uniform)."""

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        custom_encoder=None,
        custom_decoder=None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps)
        layer_kw = dict(batch_first=batch_first, norm_first=norm_first, bias=bias, **kw)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(*layer_args, **layer_kw),
                num_encoder_layers,
                LayerNorm(d_model, layer_norm_eps, bias=bias, **kw),
            )
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(*layer_args, **layer_kw),
                num_decoder_layers,
                LayerNorm(d_model, layer_norm_eps, bias=bias, **kw),
            )
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    def forward(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal=None,
        tgt_is_causal=None,
        memory_is_causal: bool = False,
    ):
        """Encode ``src``, decode ``tgt`` against it; the output has ``tgt``'s shape."""
        batched = src.ndim == 3
        if not self.batch_first and src.shape[1] != tgt.shape[1] and batched:
            raise RuntimeError("the batch number of src and tgt must be equal")
        if self.batch_first and src.shape[0] != tgt.shape[0] and batched:
            raise RuntimeError("the batch number of src and tgt must be equal")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise RuntimeError(
                f"the feature number of src and tgt must be equal to d_model ({self.d_model}), "
                f"got src of shape {list(src.shape)} and tgt of shape {list(tgt.shape)}"
            )
        memory = self.encoder(
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        return self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device=None, dtype=None) -> Tensor:
        """A ``(sz, sz)`` float mask: ``-inf`` above the diagonal (future positions), 0
        elsewhere."""
        from ...backend import as_dtype, get_default_dtype

        dtype = as_dtype(dtype) if dtype is not None else get_default_dtype()
        mask = Tensor(np.triu(np.full((sz, sz), -np.inf, dtype=dtype.np), 1))
        return mask if device is None else mask.to(device)
