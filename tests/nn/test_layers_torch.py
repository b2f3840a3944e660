"""The layers real programs use (resampling, pooling, transposed conv, dropouts, embedding
bags, distances, losses, activations) against PyTorch: same constructor arguments, same
parameters (a torch ``state_dict`` loaded unchanged), float64 outputs and gradients to 1e-10;
bad input raises PyTorch's error and changes no state."""

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
    flat,
    load_torch_state,
)

rng = np.random.default_rng(0)


def _pair(name, *args, **kwargs):
    theirs = getattr(torch.nn, name)(*args, **kwargs).double()
    ours = getattr(nn, name)(*args, **kwargs).double()
    if list(theirs.state_dict()):
        load_torch_state(ours, theirs)
    return ours, theirs


def _check(ours, theirs, arrays, consts=(), tol=1e-10):
    pairs = [both(a, torch) for a in arrays]
    consts_dg = [dg.tensor(c) for c in consts]
    consts_t = [torch.tensor(c) for c in consts]
    out_dg = ours(*[p[0] for p in pairs], *consts_dg)
    out_t = theirs(*[p[1] for p in pairs], *consts_t)
    for i, (a, b) in enumerate(zip(flat(out_dg), flat(out_t))):
        if b.is_floating_point():
            assert_close(a, b, tol, f"output {i}")
        else:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    backward_both(flat(out_dg), flat(out_t), torch)
    assert_grads_match(ours, theirs, [p[0] for p in pairs], [p[1] for p in pairs], tol)


MODULES = [
    ("PixelShuffle", (3,), {}, [(2, 18, 3, 4)]),
    ("PixelUnshuffle", (2,), {}, [(2, 3, 4, 6)]),
    ("ChannelShuffle", (3,), {}, [(2, 6, 4, 4)]),
    ("Upsample", (), dict(scale_factor=2), [(2, 3, 4, 5)]),
    ("Upsample", (), dict(scale_factor=2, mode="bilinear"), [(2, 3, 4, 5)]),
    ("Upsample", (), dict(size=(7, 9), mode="bilinear", align_corners=True), [(1, 2, 4, 5)]),
    ("Upsample", (), dict(scale_factor=1.5, mode="bicubic"), [(1, 2, 4, 5)]),
    ("Upsample", (), dict(size=11, mode="linear"), [(2, 3, 5)]),
    ("Upsample", (), dict(scale_factor=2, mode="trilinear"), [(1, 2, 3, 4, 2)]),
    ("Upsample", (), dict(scale_factor=3, mode="nearest"), [(1, 2, 3, 4, 2)]),
    ("UpsamplingNearest2d", (), dict(size=(5, 7)), [(1, 2, 3, 4)]),
    ("UpsamplingBilinear2d", (), dict(scale_factor=2), [(1, 2, 3, 4)]),
    ("ConvTranspose1d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1), [(2, 4, 7)]),
    ("ConvTranspose1d", (4, 6, 3), dict(groups=2, dilation=2, bias=False), [(4, 9)]),
    ("MaxPool1d", (3,), dict(stride=2, padding=1), [(2, 3, 9)]),
    ("AvgPool1d", (3,), dict(stride=2, padding=1, count_include_pad=False), [(2, 3, 9)]),
    ("AdaptiveAvgPool1d", (4,), {}, [(2, 3, 9)]),
    ("AdaptiveMaxPool1d", (4,), dict(return_indices=True), [(2, 3, 9)]),
    ("AdaptiveMaxPool2d", ((3, 4),), dict(return_indices=True), [(2, 3, 7, 9)]),
    ("AdaptiveMaxPool2d", (2,), {}, [(3, 6, 6)]),
    ("AdaptiveMaxPool2d", ((None, 3),), {}, [(1, 2, 5, 7)]),
    ("CosineSimilarity", (), dict(dim=1), [(4, 5), (4, 5)]),
    ("CosineSimilarity", (), dict(dim=-1), [(2, 3, 5), (1, 3, 5)]),
    ("PairwiseDistance", (), dict(), [(4, 5), (4, 5)]),
    ("PairwiseDistance", (), dict(p=1.0, keepdim=True), [(4, 5), (4, 5)]),
    ("PReLU", (), {}, [(3, 4)]),
    ("PReLU", (3,), dict(init=0.1), [(2, 3, 4)]),
    ("CELU", (0.7,), {}, [(3, 4)]),
    ("GLU", (), dict(dim=1), [(3, 4)]),
    ("Hardshrink", (0.3,), {}, [(3, 4)]),
    ("Softshrink", (0.3,), {}, [(3, 4)]),
    ("Tanhshrink", (), {}, [(3, 4)]),
    ("Softmin", (), dict(dim=1), [(3, 4)]),
    ("Softmax2d", (), {}, [(2, 3, 4, 4)]),
    ("LeakyReLU", (0.2,), {}, [(3, 4)]),
    ("ELU", (), dict(alpha=0.5), [(3, 4)]),
    ("GELU", (), dict(approximate="tanh"), [(3, 4)]),
    ("SiLU", (), {}, [(3, 4)]),
    ("Mish", (), {}, [(3, 4)]),
    ("Softplus", (), dict(beta=2.0, threshold=3.0), [(3, 4)]),
    ("Hardtanh", (-0.5, 0.7), {}, [(3, 4)]),
    ("Hardswish", (), {}, [(3, 4)]),
    ("Hardsigmoid", (), {}, [(3, 4)]),
    ("Softsign", (), {}, [(3, 4)]),
    ("LogSigmoid", (), {}, [(3, 4)]),
    ("ReLU6", (), {}, [(3, 4)]),
    ("SELU", (), {}, [(3, 4)]),
    ("Threshold", (0.1, 20.0), {}, [(3, 4)]),
]


@pytest.mark.parametrize(
    "name,args,kwargs,shapes",
    MODULES,
    ids=[f"{m[0]}-{i}" for i, m in enumerate(MODULES)],
)
def test_module_matches_torch(name, args, kwargs, shapes):
    ours, theirs = _pair(name, *args, **kwargs)
    arrays = [rng.standard_normal(s) * 2 for s in shapes]
    # torch's CELU and Hardsigmoid backwards use a float32 constant (1/alpha, 1/6) in float64:
    # distgrad's exact gradients differ from theirs at 3e-8 relative
    _check(ours, theirs, arrays, tol=1e-7 if name in ("CELU", "Hardsigmoid") else 1e-10)


def test_conv_transpose1d_output_size_and_init():
    ours, theirs = _pair("ConvTranspose1d", 3, 5, 3, stride=3)
    x = rng.standard_normal((2, 3, 4))
    x_dg, x_t = both(x, torch)
    a, b = ours(x_dg, output_size=[13]), theirs(x_t, output_size=[13])
    assert_close(a, b)
    with pytest.raises(ValueError, match="valid sizes range from 12 to 14"):
        ours(x_dg, output_size=[15])
    w = nn.ConvTranspose1d(3, 5, 3).weight.detach().numpy()
    assert np.abs(w).max() <= 1 / np.sqrt(5 * 3)  # kaiming-uniform(a=sqrt 5): fan_in = 5 * 3


LOSSES = [
    ("KLDivLoss", dict(reduction="batchmean"), "logprob", "prob"),
    ("KLDivLoss", dict(reduction="sum", log_target=True), "logprob", "logprob"),
    ("KLDivLoss", dict(reduction="none"), "logprob", "prob"),
    ("SoftMarginLoss", dict(), "x", "sign"),
    ("MultiLabelSoftMarginLoss", dict(), "x", "binary"),
    ("PoissonNLLLoss", dict(full=True), "x", "count"),
    ("HingeEmbeddingLoss", dict(margin=0.5), "x", "sign"),
]


def _target(kind, shape):
    if kind == "prob":
        p = rng.random(shape) + 0.1
        return p / p.sum(-1, keepdims=True)
    if kind == "logprob":
        return np.log(_target("prob", shape))
    if kind == "sign":
        return np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    if kind == "binary":
        return (rng.random(shape) < 0.5).astype(np.float64)
    if kind == "count":
        return rng.integers(0, 5, shape).astype(np.float64)
    return rng.standard_normal(shape)


@pytest.mark.parametrize(
    "name,kwargs,inp,tgt", LOSSES, ids=[f"{x[0]}-{i}" for i, x in enumerate(LOSSES)]
)
def test_loss_matches_torch(name, kwargs, inp, tgt):
    ours, theirs = _pair(name, **kwargs)
    _check(ours, theirs, [_target(inp, (4, 5))], [_target(tgt, (4, 5))])


def test_pair_losses_match_torch():
    a, b = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    y = np.array([1.0, -1.0, 1.0, -1.0])
    _check(*_pair("CosineEmbeddingLoss", margin=0.2), [a, b], [y])
    _check(*_pair("MarginRankingLoss", margin=0.1), [a[:, 0], b[:, 0]], [y])
    _check(*_pair("TripletMarginLoss", margin=0.5, swap=True), [a, b, rng.standard_normal((4, 5))])
    _check(*_pair("GaussianNLLLoss", full=True), [a, b, rng.random((4, 1)) + 0.2])


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_matches_torch(mode):
    ours, theirs = _pair("EmbeddingBag", 10, 4, mode=mode)
    idx = np.array([1, 4, 2, 9, 0, 3, 4, 7])
    off = np.array([0, 3, 3, 5])
    out_dg = ours(dg.tensor(idx), dg.tensor(off))
    out_t = theirs(torch.tensor(idx), torch.tensor(off))
    assert_close(out_dg, out_t)
    backward_both([out_dg], [out_t], torch)
    assert_grads_match(ours, theirs)
    # 2-D input with a padding index; include_last_offset with per-sample weights
    ours, theirs = _pair("EmbeddingBag", 10, 4, mode=mode, padding_idx=0)
    idx2 = np.array([[1, 0, 3], [0, 0, 5]])
    assert_close(ours(dg.tensor(idx2)), theirs(torch.tensor(idx2)))
    if mode == "sum":
        ours, theirs = _pair("EmbeddingBag", 10, 4, mode=mode, include_last_offset=True)
        w_dg, w_t = both(rng.standard_normal(8), torch)
        off2 = np.array([0, 2, 8])
        a = ours(dg.tensor(idx), dg.tensor(off2), per_sample_weights=w_dg)
        b = theirs(torch.tensor(idx), torch.tensor(off2), per_sample_weights=w_t)
        assert_close(a, b)
        backward_both([a], [b], torch)
        assert_close(w_dg.grad, w_t.grad)


def test_channel_dropouts_zero_whole_channels():
    for cls, shape in ((nn.Dropout1d, (4, 6, 50)), (nn.Dropout2d, (4, 6, 5, 10))):
        m = cls(0.5)
        x = dg.ones(*shape)
        y = m(x).numpy()
        per_channel = y.reshape(shape[0], shape[1], -1)
        assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
        assert 0 < (per_channel == 0).all(-1).sum() < shape[0] * shape[1]
        m.eval()
        assert np.array_equal(m(x).numpy(), x.numpy())


def test_rrelu_training_and_eval():
    m = nn.RReLU(0.1, 0.3)
    x = dg.tensor(-np.ones((1000,)))
    y = m(x).numpy()
    assert -0.3 <= y.min() and y.max() <= -0.1 and y.std() > 0.03
    m.eval()
    np.testing.assert_allclose(m(x).numpy(), -0.2)


# ---- bad input ---------------------------------------------------------------------------------
def test_bad_input_errors_as_torch():
    f = nn.functional
    x = dg.randn(1, 5, 4, 4)
    with pytest.raises(RuntimeError, match="input.size\\(-3\\)=5 is not divisible by 4"):
        nn.PixelShuffle(2)(x)
    with pytest.raises(RuntimeError, match="input.size\\(-2\\)=5 is not divisible by 2"):
        nn.PixelUnshuffle(2)(dg.randn(1, 1, 5, 4))
    with pytest.raises(ValueError, match="only one of size or scale_factor should be defined"):
        f.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(NotImplementedError, match="Got 4D input, but linear mode needs 3D input"):
        f.interpolate(x, size=3, mode="linear")
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        f.interpolate(x, size=3, align_corners=True)
    with pytest.raises(ValueError, match="same number of spatial dimensions"):
        nn.Upsample(size=(3, 4, 5))(x)
    with pytest.raises(ValueError, match="offsets has to be a 1D Tensor but got None"):
        nn.EmbeddingBag(5, 2)(dg.tensor([1, 2]))
    with pytest.raises(ValueError, match="if input is 2D, then offsets has to be None"):
        nn.EmbeddingBag(5, 2)(dg.tensor([[1, 2]]), dg.tensor([0]))
    with pytest.raises(NotImplementedError, match="only supported for mode='sum'"):
        nn.EmbeddingBag(5, 2)(dg.tensor([1, 2]), dg.tensor([0]), dg.ones(2))
    with pytest.raises(TypeError, match="'indices' to have one of the following scalar types"):
        nn.EmbeddingBag(5, 2)(dg.ones(2), dg.tensor([0]))
    with pytest.raises(RuntimeError, match="prelu"):
        nn.PReLU(3)(dg.randn(2, 4))
    with pytest.raises(RuntimeError, match="conv_transpose1d"):
        nn.ConvTranspose1d(4, 2, 3)(dg.randn(2, 3, 5))


def test_failed_calls_change_no_state():
    cases = (
        (nn.PReLU(3), (dg.randn(2, 4),)),
        (nn.EmbeddingBag(5, 2, max_norm=0.1), (dg.tensor([1, 7]), dg.tensor([0]))),
        (nn.ConvTranspose1d(4, 2, 3), (dg.randn(2, 3, 5),)),
    )
    for module, args in cases:
        before = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
        with pytest.raises((RuntimeError, IndexError, ValueError)):
            module(*args)
        for k, v in module.state_dict().items():
            np.testing.assert_array_equal(before[k], v.detach().numpy(), err_msg=k)


# ---- nn.init ----------------------------------------------------------------------------------
def test_dirac_and_eye_match_torch():
    for shape, groups in (((4, 2, 3), 1), ((6, 3, 3, 3), 2), ((2, 2, 1, 3, 3), 1)):
        ours, theirs = dg.empty(*shape), torch.empty(*shape)
        nn.init.dirac_(ours, groups)
        torch.nn.init.dirac_(theirs, groups)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    ours, theirs = dg.empty(3, 5), torch.empty(3, 5)
    np.testing.assert_array_equal(nn.init.eye_(ours).numpy(), torch.nn.init.eye_(theirs).numpy())


def test_random_inits_have_torch_statistics():
    w = dg.empty(300, 200)
    nn.init.sparse_(w, sparsity=0.3, std=0.05)
    a = w.numpy()
    assert ((a == 0).sum(0) == 90).all()  # ceil(0.3 * 300) zeros in every column
    assert abs(a[a != 0].std() - 0.05) < 0.003
    nn.init.orthogonal_(w, gain=2.0)
    np.testing.assert_allclose(w.numpy().T @ w.numpy(), 4 * np.eye(200), atol=1e-4)
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=1.0)
    assert w.numpy().min() >= -0.5 and w.numpy().max() <= 1.0
    with pytest.warns(FutureWarning, match="nn.init.xavier_uniform_"):
        nn.init.xavier_uniform(w)
    with pytest.raises(ValueError, match="Only tensors with 3, 4, or 5 dimensions"):
        nn.init.dirac_(dg.empty(3, 3))


# ---- parametrizations ------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, 1, None])
def test_weight_norm_matches_torch(dim):
    t_conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(3, 4, 3), dim=dim)
    d_conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(3, 4, 3), dim=dim)
    t_conv, d_conv = t_conv.double(), d_conv.double()
    assert list(d_conv.state_dict()) == list(t_conv.state_dict())
    load_torch_state(d_conv, t_conv)
    _check(d_conv, t_conv, [rng.standard_normal((2, 3, 7))])
    assert type(d_conv).__name__ == "ParametrizedConv1d"
    w = d_conv.weight.detach().numpy().copy()
    nn.utils.parametrize.remove_parametrizations(d_conv, "weight")
    torch.nn.utils.parametrize.remove_parametrizations(t_conv, "weight")
    assert type(d_conv) is nn.Conv1d
    assert list(d_conv.state_dict()) == list(t_conv.state_dict())
    np.testing.assert_allclose(d_conv.weight.detach().numpy(), w)


def test_parametrization_setter_and_errors():
    m = nn.utils.parametrizations.weight_norm(nn.Linear(3, 2))
    target = dg.randn(2, 3)
    m.weight = target
    np.testing.assert_allclose(m.weight.detach().numpy(), target.numpy(), rtol=1e-6)
    assert nn.utils.parametrize.is_parametrized(m, "weight")
    with pytest.raises(ValueError, match="does not have a parameter, a buffer"):
        nn.utils.parametrize.register_parametrization(m, "nothing", nn.Identity())
