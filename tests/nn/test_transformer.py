"""MultiheadAttention and the Transformer family against PyTorch: the same weights (a torch
``state_dict`` loaded unchanged), float64, outputs and gradients to 1e-10; masks of every kind;
errors for bad input, which change no state."""

import numpy as np
import pytest

import distgrad as dg
from distgrad import nn

torch = pytest.importorskip("torch")

from tests.nn.torch_parity import (  # noqa: E402
    assert_close,
    assert_grads_match,
    backward_both,
    both,
    load_torch_state,
)

E, H = 8, 2


def _pair(name, *args, **kwargs):
    t_kwargs = dict(kwargs)
    if name == "TransformerEncoder":
        t_kwargs["enable_nested_tensor"] = False
    theirs = _build(torch.nn, name, args, t_kwargs).double()
    ours = _build(nn, name, args, kwargs).double()
    load_torch_state(ours, theirs)
    theirs.eval()  # dropout off on both sides (outputs must match exactly)
    ours.eval()
    return ours, theirs


def _build(lib, name, args, kwargs):
    if name in ("TransformerEncoder", "TransformerDecoder"):
        layer_name = name + "Layer"
        layer = getattr(lib, layer_name)(*args, **kwargs.pop("layer", {}))
        norm = lib.LayerNorm(args[0]) if kwargs.pop("final_norm", False) else None
        return getattr(lib, name)(layer, kwargs.pop("num_layers", 2), norm, **kwargs)
    return getattr(lib, name)(*args, **kwargs)


def _run(ours, theirs, arrays, masks=None, **kw):
    """Call both with float inputs ``arrays`` (differentiated) and constant ``masks``."""
    pairs = [both(a, torch) for a in arrays]
    masks = masks or {}
    m_dg = {k: (None if v is None else dg.tensor(v)) for k, v in masks.items()}
    m_t = {k: (None if v is None else torch.tensor(v)) for k, v in masks.items()}
    out_dg = ours(*[p[0] for p in pairs], **m_dg, **kw)
    out_t = theirs(*[p[1] for p in pairs], **m_t, **kw)
    outs_dg = [o for o in (out_dg if isinstance(out_dg, tuple) else (out_dg,)) if o is not None]
    outs_t = [o for o in (out_t if isinstance(out_t, tuple) else (out_t,)) if o is not None]
    assert len(outs_dg) == len(outs_t)
    for i, (a, b) in enumerate(zip(outs_dg, outs_t)):
        assert_close(a, b, what=f"output {i}")
    backward_both(outs_dg, outs_t, torch)
    assert_grads_match(ours, theirs, [p[0] for p in pairs], [p[1] for p in pairs])


rng = np.random.default_rng(0)


def _x(*shape):
    return rng.standard_normal(shape)


def _causal(n):
    return np.triu(np.full((n, n), -np.inf), 1)


@pytest.mark.parametrize(
    "kwargs,shapes,masks",
    [
        (dict(), [(5, 3, E)] * 3, {}),
        (dict(batch_first=True), [(3, 5, E), (3, 4, E), (3, 4, E)], {}),
        (dict(kdim=6, vdim=4), [(5, 3, E), (4, 3, 6), (4, 3, 4)], {}),
        (dict(bias=False), [(5, E), (4, E), (4, E)], {}),  # unbatched
        (
            dict(),
            [(5, 3, E), (4, 3, E), (4, 3, E)],
            dict(
                key_padding_mask=np.array(
                    [[False, False, True, True], [False] * 4, [False, True, False, True]]
                )
            ),
        ),
        (dict(), [(5, 2, E), (4, 2, E), (4, 2, E)], dict(attn_mask=_x(5, 4))),
        (dict(), [(4, 2, E)] * 3, dict(attn_mask=np.triu(np.ones((4, 4), bool), 1))),
        (
            dict(),
            [(5, 2, E), (4, 2, E), (4, 2, E)],
            dict(attn_mask=_x(2 * H, 5, 4), key_padding_mask=_x(2, 4)),
        ),
    ],
)
@pytest.mark.parametrize("average", [True, False])
def test_multihead_attention_matches_torch(kwargs, shapes, masks, average):
    ours, theirs = _pair("MultiheadAttention", E, H, **kwargs)
    _run(ours, theirs, [_x(*s) for s in shapes], masks, average_attn_weights=average)


def test_self_attention_shares_one_projection():
    """query is key is value: the same numbers as separate projections (torch's fast path)."""
    ours, theirs = _pair("MultiheadAttention", E, H)
    x_dg, x_t = both(_x(5, 3, E), torch)
    out_dg, w_dg = ours(x_dg, x_dg, x_dg)
    out_t, w_t = theirs(x_t, x_t, x_t)
    assert_close(out_dg, out_t)
    assert_close(w_dg, w_t)
    backward_both([out_dg, w_dg], [out_t, w_t], torch)
    assert_grads_match(ours, theirs, [x_dg], [x_t])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu", "callable"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_and_decoder_layers_match_torch(norm_first, activation, batch_first):
    act = {"callable": lambda lib: lib.nn.functional.silu}.get(activation)
    kw = dict(dim_feedforward=16, dropout=0.1, norm_first=norm_first, batch_first=batch_first)
    theirs = torch.nn.TransformerEncoderLayer(
        E, H, activation=act(torch) if act else activation, **kw
    ).double()
    ours = nn.TransformerEncoderLayer(E, H, activation=act(dg) if act else activation, **kw)
    ours = ours.double()
    load_torch_state(ours, theirs)
    ours.eval()
    theirs.eval()
    shape = (3, 5, E) if batch_first else (5, 3, E)
    pad = np.zeros((3, 5), bool)
    pad[1, 3:] = True
    _run(ours, theirs, [_x(*shape)], dict(src_mask=_causal(5), src_key_padding_mask=pad))
    theirs = torch.nn.TransformerDecoderLayer(
        E, H, activation=act(torch) if act else activation, **kw
    ).double()
    ours = nn.TransformerDecoderLayer(E, H, activation=act(dg) if act else activation, **kw)
    ours = ours.double()
    load_torch_state(ours, theirs)
    ours.eval()
    theirs.eval()
    mem_shape = (3, 6, E) if batch_first else (6, 3, E)
    mem_pad = np.zeros((3, 6), bool)
    mem_pad[2, 4:] = True
    _run(
        ours,
        theirs,
        [_x(*shape), _x(*mem_shape)],
        dict(tgt_mask=_causal(5), tgt_key_padding_mask=pad, memory_key_padding_mask=mem_pad),
        tgt_is_causal=True,
    )


def test_encoder_and_decoder_stacks_match_torch():
    ours, theirs = _pair(
        "TransformerEncoder", E, H, layer=dict(dim_feedforward=16), num_layers=3, final_norm=True
    )
    _run(ours, theirs, [_x(5, 2, E)], dict(mask=_causal(5)), is_causal=True)
    ours, theirs = _pair(
        "TransformerDecoder", E, H, layer=dict(dim_feedforward=16), num_layers=2, final_norm=True
    )
    _run(ours, theirs, [_x(5, 2, E), _x(7, 2, E)], dict(tgt_mask=_causal(5), memory_mask=_x(5, 7)))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_matches_torch(norm_first):
    kw = dict(
        d_model=E,
        nhead=H,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=16,
        batch_first=True,
        norm_first=norm_first,
    )
    ours, theirs = _pair("Transformer", **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    ours_mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=dg.float64)
    np.testing.assert_array_equal(ours_mask.numpy(), tgt_mask.numpy())
    pad = np.zeros((2, 6), bool)
    pad[0, 5:] = True
    _run(
        ours,
        theirs,
        [_x(2, 6, E), _x(2, 4, E)],
        dict(tgt_mask=tgt_mask.numpy(), src_key_padding_mask=pad, memory_key_padding_mask=pad),
    )


def test_transformer_init_and_training_mode():
    model = nn.Transformer(E, H, 1, 1, 16)
    w = model.encoder.layers[0].linear1.weight.detach().numpy()
    assert np.abs(w).max() <= np.sqrt(6 / (E + 16)) + 1e-7  # xavier-uniform
    model.train()
    src, tgt = dg.randn(6, 2, E), dg.randn(4, 2, E)
    dg.manual_seed(0)
    a = model(src, tgt).detach().numpy()
    dg.manual_seed(1)
    b = model(src, tgt).detach().numpy()
    assert not np.allclose(a, b)  # dropout 0.1 active in training
    model.eval()
    assert np.array_equal(model(src, tgt).detach().numpy(), model(src, tgt).detach().numpy())


# ---- scaled_dot_product_attention ------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(is_causal=True),
        dict(scale=0.3),
        dict(attn_mask="bool"),
        dict(attn_mask="float"),
        dict(attn_mask="broadcast"),
    ],
    ids=str,
)
def test_sdpa_matches_torch(kwargs):
    q, k, v = (
        both(_x(2, 3, 5, 4), torch),
        both(_x(2, 3, 6, 4), torch),
        both(_x(2, 3, 6, 7), torch),
    )
    kw_dg, kw_t = dict(kwargs), dict(kwargs)
    mask = kwargs.get("attn_mask")
    if mask is not None:
        m = {
            "bool": rng.random((5, 6)) < 0.7,
            "float": _x(2, 3, 5, 6),
            "broadcast": _x(3, 1, 6),
        }[mask]
        if mask == "bool":
            m[:, 0] = True  # every query attends somewhere
        kw_dg["attn_mask"], kw_t["attn_mask"] = dg.tensor(m), torch.tensor(m)
    a = nn.functional.scaled_dot_product_attention(q[0], k[0], v[0], **kw_dg)
    b = torch.nn.functional.scaled_dot_product_attention(q[1], k[1], v[1], **kw_t)
    assert_close(a, b)
    backward_both([a], [b], torch)
    for x in (q, k, v):
        assert_close(x[0].grad, x[1].grad)


def test_sdpa_dropout_is_inverted_dropout():
    q = dg.randn(4, 8, 16, dtype=dg.float64)
    full = nn.functional.scaled_dot_product_attention(q, q, q)
    dg.manual_seed(3)
    dropped = nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert not np.allclose(full.numpy(), dropped.numpy())
    with pytest.raises(RuntimeError, match="is_causal"):
        nn.functional.scaled_dot_product_attention(q, q, q, dg.ones(8, 8), is_causal=True)


def test_sdpa_bad_shapes():
    q, k = dg.randn(2, 5, 4), dg.randn(2, 6, 3)
    with pytest.raises(RuntimeError, match="query.*4.*key.*3"):
        nn.functional.scaled_dot_product_attention(q, k, k)
    with pytest.raises(RuntimeError, match="key.*value"):
        nn.functional.scaled_dot_product_attention(q, dg.randn(2, 6, 4), dg.randn(2, 7, 4))
    with pytest.raises(RuntimeError, match="attn_mask"):
        nn.functional.scaled_dot_product_attention(q, q, q, dg.ones(4, 4, dtype=dg.bool))
    with pytest.raises(RuntimeError, match="dtype"):
        nn.functional.scaled_dot_product_attention(q, q.double(), q)


# ---- bad input: torch-style errors, nothing changed ------------------------------------------
def _snapshot(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda m: m(dg.randn(5, 2, 7), dg.randn(5, 2, 7), dg.randn(5, 2, 7)),
            AssertionError,
            "was expecting embedding dimension of 8, but got 7",
        ),
        (
            lambda m: m(dg.randn(5, 2, E), dg.randn(4, 2, E), dg.randn(3, 2, E)),
            AssertionError,
            "do not match value's",
        ),
        (
            lambda m: m(*(dg.randn(5, 2, E),) * 3, attn_mask=dg.zeros(4, 5)),
            RuntimeError,
            r"The shape of the 2D attn_mask is \[4, 5\], but should be \(5, 5\)",
        ),
        (
            lambda m: m(*(dg.randn(5, 2, E),) * 3, attn_mask=dg.zeros(3, 5, 5)),
            RuntimeError,
            r"The shape of the 3D attn_mask is \[3, 5, 5\], but should be \(4, 5, 5\)",
        ),
        (
            lambda m: m(*(dg.randn(5, 2, E),) * 3, key_padding_mask=dg.zeros(2, 4, dtype=dg.bool)),
            AssertionError,
            r"expecting key_padding_mask shape of \(2, 5\), but got \[2, 4\]",
        ),
        (
            lambda m: m(*(dg.randn(5, 2, E),) * 3, attn_mask=dg.zeros(5, 5, dtype=dg.int64)),
            AssertionError,
            "only bool and floating types of attn_mask",
        ),
        (
            lambda m: m(dg.randn(5, E), dg.randn(5, 2, E), dg.randn(5, 2, E)),
            AssertionError,
            "expected `key` and `value` to be 2-D",
        ),
    ],
)
def test_multihead_attention_bad_input(call, error, match):
    m = nn.MultiheadAttention(E, H)
    before = _snapshot(m)
    with pytest.raises(error, match=match):
        call(m)
    after = _snapshot(m)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_transformer_bad_input():
    model = nn.Transformer(E, H, 1, 1, 16)
    with pytest.raises(RuntimeError, match="the batch number of src and tgt must be equal"):
        model(dg.randn(5, 2, E), dg.randn(4, 3, E))
    with pytest.raises(RuntimeError, match="the feature number of src and tgt must be equal"):
        model(dg.randn(5, 2, E), dg.randn(4, 2, 6))
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(E, H, activation="tanh")
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadAttention(E, 3)


def test_sdpa_grouped_query_attention_matches_torch():
    q, k, v = both(_x(2, 4, 5, 3), torch), both(_x(2, 2, 6, 3), torch), both(_x(2, 2, 6, 3), torch)
    a = nn.functional.scaled_dot_product_attention(q[0], k[0], v[0], enable_gqa=True)
    b = torch.nn.functional.scaled_dot_product_attention(q[1], k[1], v[1], enable_gqa=True)
    assert_close(a, b)
    backward_both([a], [b], torch)
    for x in (q, k, v):
        assert_close(x[0].grad, x[1].grad)
