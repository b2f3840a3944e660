"""Layers: shapes, PyTorch's default initialisations, numerics against numpy, gradients."""

import math

import numpy as np
import pytest

import distgrad as dg
from distgrad import nn
from distgrad.autograd import gradcheck


def test_linear_matches_numpy_and_default_init_bounds():
    lin = nn.Linear(50, 20)
    bound = 1 / math.sqrt(50)
    w = lin.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(lin.bias.detach().numpy()).max() <= bound
    x = dg.randn(7, 50)
    np.testing.assert_allclose(
        lin(x).detach().numpy(), x.numpy() @ w.T + lin.bias.detach().numpy(), rtol=1e-5
    )
    with pytest.raises(RuntimeError, match="in_features=50.*\\[7, 3\\]"):
        lin(dg.randn(7, 3))


def test_linear_gradcheck():
    lin = nn.Linear(3, 2).double()
    x = dg.randn(4, 3, dtype=dg.float64, requires_grad=True)
    assert gradcheck(lambda x, w, b: nn.functional.linear(x, w, b), (x, lin.weight, lin.bias))


def test_batchnorm_running_stats_and_eval():
    bn = nn.BatchNorm1d(3, momentum=0.1)
    x = dg.randn(16, 3) * 2 + 1
    y = bn(x)
    xn = x.numpy()
    np.testing.assert_allclose(
        y.detach().numpy(), (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * xn.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * xn.var(0, ddof=1), rtol=1e-5)
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    np.testing.assert_allclose(
        bn(x).detach().numpy(),
        (xn - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5),
        rtol=1e-4,
    )
    with pytest.raises(ValueError, match="expected 3 channels"):
        bn(dg.randn(4, 5))


def test_conv_pool_shapes_and_default_init():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert conv.weight.shape == (8, 3, 3, 3)
    out = nn.MaxPool2d(2)(conv(dg.randn(2, 3, 16, 16)))
    assert out.shape == (2, 8, 4, 4)
    assert nn.AdaptiveAvgPool2d(1)(out).shape == (2, 8, 1, 1)
    assert nn.ConvTranspose2d(8, 4, 2, stride=2)(out).shape == (2, 4, 8, 8)
    assert nn.Conv1d(2, 4, 3)(dg.randn(1, 2, 10)).shape == (1, 4, 8)
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 8, 3, groups=2)


def test_layernorm_groupnorm_match_numpy():
    x = dg.randn(4, 6, 5)
    ln = nn.LayerNorm(5)
    xn = x.numpy()
    ref = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(ln(x).detach().numpy(), ref, rtol=1e-4, atol=1e-5)
    gn = nn.GroupNorm(3, 6)
    g = xn.reshape(4, 3, -1)
    ref = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(gn(x).detach().numpy(), ref.reshape(4, 6, 5), rtol=1e-4, atol=1e-5)


def test_dropout_train_and_eval():
    drop = nn.Dropout(0.5)
    x = dg.ones(1000)
    y = drop(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())


def test_embedding_lookup_and_padding_grad():
    emb = nn.Embedding(10, 4, padding_idx=0)
    assert float(abs(emb.weight[0]).sum()) == 0
    idx = dg.tensor([[0, 3], [3, 9]])
    out = emb(idx)
    np.testing.assert_array_equal(out.detach().numpy(), emb.weight.detach().numpy()[idx.numpy()])
    out.sum().backward()
    g = emb.weight.grad.numpy()
    assert g[0].sum() == 0 and g[3].sum() == 8 and g[9].sum() == 4


def _numpy_mha(x, mha):
    """Reference multi-head self-attention in numpy, (L, N, E) layout."""
    w = mha.in_proj_weight.detach().numpy()
    b = mha.in_proj_bias.detach().numpy()
    L, N, E = x.shape
    H, D = mha.num_heads, E // mha.num_heads
    q, k, v = (x @ w[i * E : (i + 1) * E].T + b[i * E : (i + 1) * E] for i in range(3))
    split = lambda t: t.reshape(L, N, H, D).transpose(1, 2, 0, 3)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)
    s = np.exp(s - s.max(-1, keepdims=True))
    a = s / s.sum(-1, keepdims=True)
    out = (a @ v).transpose(2, 0, 1, 3).reshape(L, N, E)
    return (
        out @ mha.out_proj.weight.detach().numpy().T + mha.out_proj.bias.detach().numpy(),
        a.mean(1),
    )


def test_multihead_attention_matches_numpy_and_has_gradients():
    mha = nn.MultiheadAttention(8, 2).double()
    x = dg.randn(5, 3, 8, dtype=dg.float64, requires_grad=True)
    out, weights = mha(x, x, x)
    ref_out, ref_w = _numpy_mha(x.detach().numpy(), mha)
    np.testing.assert_allclose(out.detach().numpy(), ref_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.detach().numpy(), ref_w, rtol=1e-10, atol=1e-12)
    out.sum().backward()
    assert x.grad is not None and mha.in_proj_weight.grad is not None
    # batch_first and causal masks
    mha_bf = nn.MultiheadAttention(8, 2, batch_first=True)
    y, _ = mha_bf(*(dg.randn(3, 5, 8),) * 3, is_causal=True, need_weights=False)
    assert y.shape == (3, 5, 8)


def test_transformer_encoder_layer_trains():
    dg.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True
    )
    x = dg.randn(4, 6, 16)
    target = dg.randn(4, 6, 16)
    opt = dg.optim.Adam(layer.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = nn.functional.mse_loss(layer(x), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_init_functions():
    w = dg.empty(200, 100)
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 100)) < 0.01
    nn.init.xavier_uniform_(w)
    assert np.abs(w.numpy()).max() <= math.sqrt(6 / 300) + 1e-7
    nn.init.zeros_(w)
    assert float(abs(w).sum()) == 0
    nn.init.constant_(w, 3.0)
    assert w.numpy().min() == 3.0
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)


def test_clip_grad_norm_and_value():
    a = dg.tensor([3.0, 0.0], requires_grad=True)
    b = dg.tensor([4.0], requires_grad=True)
    a.grad, b.grad = dg.tensor([3.0, 0.0]), dg.tensor([4.0])
    total = nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    norm = math.sqrt(float((a.grad**2).sum() + (b.grad**2).sum()))
    assert norm == pytest.approx(1.0, rel=1e-5)
    nn.utils.clip_grad_value_([a, b], 0.1)
    assert float(abs(b.grad).max()) <= 0.1 + 1e-7


def test_parameters_vector_roundtrip():
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    vec = nn.utils.parameters_to_vector(net.parameters())
    assert vec.shape == (11,)
    nn.utils.vector_to_parameters(vec * 0 + 1, net.parameters())
    assert all(float(p.detach().numpy().min()) == 1.0 for p in net.parameters())
