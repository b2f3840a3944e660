import math

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F
from tests.ops.harness import Fixed, Float, Int, OpCase, make_tests


def _seeded(fn, seed=3):
    """``fn`` with the RNG reseeded first, so every call draws the same dropout mask."""

    def run(*args):
        dg.manual_seed(seed)
        return fn(*args)

    return run


def _host_mask(shape, p, seed=3):
    """The mask distgrad draws: uniform float32 samples of the seeded host stream >= p."""
    return (np.random.default_rng(seed).random(shape, dtype=np.float32) >= p) / (1 - p)


def _normalize(x, p=2.0, axis=1, eps=1e-12):
    norm = np.linalg.norm(np.moveaxis(x, axis, -1), ord=p, axis=-1, keepdims=True)
    return x / np.maximum(np.moveaxis(norm, -1, axis), eps)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _attention(q, k, v, mask=None, causal=False, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if causal:
        mask = np.tril(np.ones((q.shape[-2], k.shape[-2]), bool))
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    return _softmax(s) @ v


Q, K, V = Float((2, 3, 4)), Float((2, 5, 4)), Float((2, 5, 3))
# every query attends to at least one key
MASK = Fixed((np.random.default_rng(5).random((3, 5)) < 0.5) | np.eye(3, 5, dtype=bool))

CASES = [
    OpCase(
        "dropout",
        _seeded(lambda x: F.dropout(x, 0.4)),
        lambda x: x * _host_mask((4, 5), 0.4),
        (Float((4, 5)),),
    ),
    OpCase(
        "dropout2d",
        _seeded(lambda x: F.dropout2d(x, 0.5)),
        lambda x: x * _host_mask((2, 3, 1, 1), 0.5),
        (Float((2, 3, 2, 2)),),
    ),
    OpCase(
        "dropout_eval", lambda x: F.dropout(x, 0.5, training=False), lambda x: x, (Float((3,)),)
    ),
    OpCase(
        "embedding", F.embedding, lambda i, w: w[i], (Int((2, 3), 6), Float((6, 4))), double=False
    ),
    OpCase(
        "embedding_freq",
        lambda i, w: F.embedding(i, w, scale_grad_by_freq=True),
        lambda i, w: w[i],
        (Int((5,), 3), Float((3, 2))),
        grad=False,
    ),
    OpCase("normalize", F.normalize, _normalize, (Float((3, 4)),)),
    OpCase(
        "normalize_p1_dim0",
        lambda x: F.normalize(x, p=1, dim=0),
        lambda x: _normalize(x, 1, 0),
        (Float((3, 4), away_from=0.0),),
    ),
    OpCase(
        "normalize_p3",
        lambda x: F.normalize(x, p=3, dim=-1),
        lambda x: _normalize(x, 3, -1),
        (Float((2, 3, 4), away_from=0.0),),
    ),
    OpCase(
        "normalize_tiny",
        lambda x: F.normalize(x, eps=1e-3),
        lambda x: x / 1e-3,
        (Fixed([[1e-4, -2e-4], [3e-4, 1e-4]]),),
    ),
    OpCase(
        "cosine_similarity",
        F.cosine_similarity,
        lambda a, b: (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)),
        (Float((3, 4)), Float((1, 4))),
    ),
    OpCase(
        "pairwise_distance",
        F.pairwise_distance,
        lambda a, b: np.linalg.norm(a - b + 1e-6, axis=-1),
        (Float((3, 4)), Float((3, 4))),
    ),
    OpCase(
        "glu", lambda x: F.glu(x, 1), lambda x: x[:, :2] / (1 + np.exp(-x[:, 2:])), (Float((3, 4)),)
    ),
    OpCase("softmax", lambda x: F.softmax(x, dim=0), lambda x: _softmax(x, 0), (Float((3, 4)),)),
    OpCase(
        "log_softmax",
        lambda x: F.log_softmax(x, dim=-1),
        lambda x: np.log(_softmax(x)),
        (Float((3, 4)),),
    ),
    OpCase("softmin", lambda x: F.softmin(x, dim=1), lambda x: _softmax(-x, 1), (Float((3, 4)),)),
    OpCase("sdpa", F.scaled_dot_product_attention, _attention, (Q, K, V)),
    OpCase(
        "sdpa_causal_scale",
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
        lambda q, k, v: _attention(q, k, v, causal=True, scale=0.3),
        (Q, K, V),
    ),
    OpCase("sdpa_bool_mask", F.scaled_dot_product_attention, _attention, (Q, K, V, MASK)),
    OpCase("sdpa_float_mask", F.scaled_dot_product_attention, _attention, (Q, K, V, Float((3, 5)))),
    OpCase(
        "sdpa_dropout",
        _seeded(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.3)),
        lambda q, k, v: (_softmax(q @ np.swapaxes(k, -1, -2) / 2) * _host_mask((2, 3, 5), 0.3)) @ v,
        (Q, K, V),
    ),
]

globals().update(make_tests(CASES))


# ---- dropout ------------------------------------------------------------------------------
def test_dropout_statistics_scale_and_gradient():
    x = dg.ones(200, 100, requires_grad=True)
    y = F.dropout(x, 0.3)
    out = y.detach().numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    (y * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * out)


def test_dropout_seeded_reproducible_and_edge_probabilities():
    x = dg.randn(50)
    dg.manual_seed(7)
    a = F.dropout(x, 0.5).numpy()
    dg.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.9, training=False) is x
    assert (F.dropout(x, 1.0).numpy() == 0).all()
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        F.dropout(x, 1.5)


def test_channel_dropout_zeroes_whole_channels_and_checks_rank():
    y = F.dropout2d(dg.ones(4, 8, 3, 3), 0.5).numpy()
    per_channel = y.reshape(4, 8, 9)
    assert ((per_channel == 0).all(-1) | (per_channel == 2).all(-1)).all()
    assert F.dropout1d(dg.ones(3, 5), 0.5).shape == (3, 5)  # unbatched (C, L)
    with pytest.raises(RuntimeError, match=r"dropout2d: expected a 3-D .* or 4-D"):
        F.dropout2d(dg.ones(6), 0.5)
    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d"):  # as PyTorch
        assert F.dropout2d(dg.ones(2, 3), 0.5).shape == (2, 3)


def test_dropout_inplace():
    leaf = dg.ones(10, 10, requires_grad=True)
    y = leaf * 1
    assert F.dropout(y, 0.5, inplace=True) is y
    y.sum().backward()
    np.testing.assert_array_equal(leaf.grad.numpy(), y.detach().numpy())


# ---- embedding and one_hot ----------------------------------------------------------------
def test_embedding_padding_idx_gets_no_gradient_and_repeats_accumulate():
    w = dg.randn(5, 3, requires_grad=True)
    idx = dg.tensor([[0, 2, 2], [4, 0, -1 + 5]])
    F.embedding(idx, w, padding_idx=-1).sum().backward()  # padding row 4
    np.testing.assert_array_equal(w.grad.numpy()[:, 0], [2, 0, 2, 0, 0])


def test_embedding_scale_grad_by_freq_and_max_norm():
    w = dg.tensor([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]], requires_grad=True)
    F.embedding(dg.tensor([0, 0, 1]), w, scale_grad_by_freq=True).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [[1, 1], [1, 1], [0, 0]])
    w2 = dg.tensor([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    out = F.embedding(dg.tensor([0, 1]), w2, max_norm=1.0)
    np.testing.assert_allclose(out.numpy(), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-5)
    np.testing.assert_allclose(w2.numpy()[2], [6, 8])  # rows not looked up stay as they were


def test_embedding_errors():
    w = dg.randn(4, 2)
    with pytest.raises(IndexError, match="index 4 for a weight with 4 rows"):
        F.embedding(dg.tensor([1, 4]), w)
    with pytest.raises(TypeError, match="integer"):
        F.embedding(dg.tensor([1.0]), w)
    with pytest.raises(ValueError, match="padding_idx"):
        F.embedding(dg.tensor([1]), w, padding_idx=7)


def test_one_hot():
    out = F.one_hot(dg.tensor([[0, 2], [1, 0]]), 4)
    assert out.dtype == dg.int64 and out.shape == (2, 2, 4)
    np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=int)[[[0, 2], [1, 0]]])
    assert F.one_hot(dg.tensor([3, 1])).shape == (2, 4)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(dg.tensor([3]), 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        F.one_hot(dg.tensor([-1]), 3)
    with pytest.raises(RuntimeError, match="index tensor"):
        F.one_hot(dg.tensor([1.0]), 3)


# ---- softmax, attention, the namespace ----------------------------------------------------
def test_softmax_implicit_dim_warns_like_pytorch():
    x = dg.randn(2, 3)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        out = F.softmax(x)
    np.testing.assert_allclose(out.numpy().sum(1), 1, rtol=1e-6)


def test_sdpa_causal_equals_explicit_mask_and_rejects_both():
    q = dg.randn(2, 4, 4, 8)
    mask = dg.tensor(np.tril(np.ones((4, 4), bool)))
    np.testing.assert_allclose(
        F.scaled_dot_product_attention(q, q, q, is_causal=True).numpy(),
        F.scaled_dot_product_attention(q, q, q, mask).numpy(),
        rtol=1e-6,
    )
    with pytest.raises(RuntimeError, match="is_causal"):
        F.scaled_dot_product_attention(q, q, q, mask, is_causal=True)


def test_glu_odd_dimension():
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        F.glu(dg.randn(2, 3))


@pytest.mark.parametrize(
    "name",
    [
        "relu",
        "gelu",
        "silu",
        "softmax",
        "log_softmax",
        "sigmoid",
        "tanh",
        "cross_entropy",
        "nll_loss",
        "mse_loss",
        "binary_cross_entropy_with_logits",
        "pad",
        "linear",
        "dropout",
        "embedding",
        "one_hot",
        "normalize",
        "cosine_similarity",
        "scaled_dot_product_attention",
        "conv2d",
    ],
)
def test_functional_namespace_has_pytorch_names(name):
    assert callable(getattr(F, name))
