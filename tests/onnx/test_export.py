"""ONNX export: models exported with ``distgrad.onnx.export`` pass ``onnx.checker`` and give
distgrad's outputs in onnxruntime (float32 tolerance), also at other sizes of the dynamic
axes; unsupported ops and untraceable models raise clear errors."""

import math

import numpy as np
import pytest

import distgrad as dg
from distgrad import nn
from distgrad.autograd import Op
from distgrad.nn import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feeds.items()})


def reference(model, inputs):
    with dg.no_grad():
        out = model(*inputs)
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in out if o is not None]


def check_export(model, inputs, tmp_path, others=(), rtol=1e-4, atol=1e-5, **kwargs):
    """Export ``model`` on ``inputs`` and compare onnxruntime with distgrad on ``inputs`` and
    on each tuple in ``others`` (e.g. another batch size); returns the ONNX model."""
    path = tmp_path / "model.onnx"
    training = model.training
    proto = dg.onnx.export(model, inputs, path, **kwargs)
    assert model.training == training  # the export restores the mode
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    model.eval()
    names = [i.name for i in proto.graph.input]
    for feed in (tuple(inputs),) + tuple(others):
        got = run_onnx(path, dict(zip(names, [t for t in feed if isinstance(t, dg.Tensor)])))
        want = reference(model, feed)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return proto


def op_types(proto):
    return {n.op_type for n in proto.graph.node}


@pytest.fixture(autouse=True)
def seed():
    dg.manual_seed(0)


def test_mlp_with_dynamic_batch(tmp_path):
    model = nn.Sequential(
        nn.Linear(6, 16),
        nn.Tanh(),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(16, 3),
        nn.LogSoftmax(dim=1),
    )
    proto = check_export(
        model,
        (dg.randn(4, 6),),
        tmp_path,
        others=[(dg.randn(9, 6),)],
        input_names=["x"],
        output_names=["logp"],
        dynamic_axes={"x": {0: "batch"}, "logp": {0: "batch"}},
    )
    assert [i.name for i in proto.graph.initializer] == [n for n, _ in model.named_parameters()]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].name == "logp"
    assert "Gemm" in op_types(proto) and "Dropout" not in op_types(proto)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(12),
            nn.Hardswish(),
            nn.AvgPool2d(2, stride=1),
            nn.Conv2d(12, 12, 1, groups=3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.features(x))


def test_cnn_with_batchnorm_statistics_and_dynamic_batch(tmp_path):
    model = SmallCNN()
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(dg.randn(6, 3, 12, 12) * 2 + 0.5)
    proto = check_export(
        model,
        (dg.randn(2, 3, 12, 12),),
        tmp_path,
        others=[(dg.randn(5, 3, 12, 12),)],
        dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
    )
    assert {
        "Conv",
        "BatchNormalization",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
    } <= op_types(proto)
    names = {i.name for i in proto.graph.initializer}
    assert {"features.1.running_mean", "features.1.running_var", "head.weight"} <= names


def test_conv1d_conv_transpose_pools_and_padding(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(2, 4, 3, padding="same", dilation=2)
            self.up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)

        def forward(self, x):
            y = self.c1(x)  # (N, 4, L)
            y = F.max_pool1d(y, 2)  # (N, 4, L/2)
            img = y.unsqueeze(2) * y.unsqueeze(3)  # (N, 4, L/2, L/2)
            img = F.pad(img, (1, 0, 0, 1), value=0.5)
            out = self.up(F.avg_pool2d(img, 3, 1, padding=1, count_include_pad=False))
            return F.adaptive_avg_pool2d(out, (3, 2)), F.max_pool2d(
                out, 3, 2, padding=1, dilation=1
            )

    check_export(
        Net(),
        (dg.randn(2, 2, 8),),
        tmp_path,
        others=[(dg.randn(3, 2, 8),)],
        dynamic_axes={"input": [0]},
    )


class LayerNormGELU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.group = nn.GroupNorm(4, 16)
        self.out = nn.Linear(16, 4, bias=False)

    def forward(self, x):  # x: (N, T, 8)
        h = F.gelu(self.norm(self.fc(x)))
        g = self.group(h.transpose(1, 2)).transpose(1, 2)  # (N, 16, T) normalised per group
        return self.out(F.gelu(g, approximate="tanh") + h)


def test_layer_norm_group_norm_gelu_with_two_dynamic_axes(tmp_path):
    model = LayerNormGELU()
    proto = check_export(
        model,
        (dg.randn(2, 5, 8),),
        tmp_path,
        others=[(dg.randn(3, 7, 8),), (dg.randn(1, 1, 8),)],
        dynamic_axes={"input": {0: "batch", 1: "time"}},
    )
    assert "LayerNormalization" in op_types(proto)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_param and dims[2].dim_value == 4


class ShapeOps(nn.Module):
    """reshape/view/flatten/transpose/permute/squeeze/unsqueeze/cat/stack/chunk/slicing,
    softmax and reductions."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(12, 12)

    def forward(self, x):  # (N, 12)
        n = x.shape[0]
        y = self.proj(x).view(n, 3, 4).transpose(1, 2)  # (N, 4, 3)
        a, b = y.chunk(2, dim=1)  # (N, 2, 3) each
        z = dg.cat([b, a, y[:, 1:3]], dim=1)  # (N, 6, 3)
        s = dg.stack([z.sum(dim=1), z.mean(dim=1), z.amax(dim=1)], dim=-1)  # (N, 3, 3)
        p = s.permute(0, 2, 1).unsqueeze(1).flatten(2)  # (N, 1, 9)
        p = p.squeeze(1) + z[:, 0, :].repeat(1, 3) * z[..., -1:].reshape(n, -1)[:, :1]
        w = F.softmax(p.reshape(n, 9, 1) / 2, dim=1).squeeze(-1)
        m, idx = s.max(dim=2)
        picked = z[:, [4, 0, 4]][::-1, ..., 1:] + z[-1, 0, 1:]  # Gather, negative step, int index
        return (
            w,
            m + picked.sum(dim=(1, 2), keepdim=True).squeeze(-1),
            x[:, None, ::2].flip(-1) - z.var(dim=1).exp().log1p().mean(),
        )


def test_reshape_transpose_cat_softmax_and_reductions(tmp_path):
    check_export(
        ShapeOps(),
        (dg.randn(3, 12),),
        tmp_path,
        others=[(dg.randn(6, 12),)],
        dynamic_axes={"input": {0: "n"}},
    )


class ElementwiseZoo(nn.Module):
    def forward(self, x, y):
        a = (x.abs() + 0.5).sqrt().log() ** 2 / (y.exp() + 1) - x.neg()
        b = F.leaky_relu(x, 0.2) + F.elu(y) + F.selu(x) + F.celu(y, 0.5) + F.silu(x)
        c = (
            F.softplus(x, beta=2.0)
            + F.hardtanh(y, -0.5, 0.5)
            + x.clamp(min=-0.3)
            + F.hardsigmoid(x)
            + F.mish(y)
            + F.logsigmoid(x)
            + F.softsign(y)
        )
        d = (
            dg.maximum(x, y) * dg.minimum(x, 0.1)
            + x.sigmoid() * y.tanh()
            + F.threshold(x, 0.1, -1.0)
            + F.hardshrink(y)
            + F.softshrink(x)
            + F.tanhshrink(y)
            + x.floor()
            + y.trunc()
            + (x * x + 1).rsqrt()
            + x.expm1()
            + x.square()
        )
        return a * b - c * d, dg.erf(x) + x.sin() * y.cos() + x.tril() + y.triu(1) + dg.cumsum(
            x, 1
        ) + (x.abs() + 1).log2() + (y * y + 1).log10() + F.prelu(x, dg.tensor([0.25]))


def test_elementwise_and_activation_ops(tmp_path):
    x, y = dg.randn(4, 4), dg.randn(4, 4)
    check_export(ElementwiseZoo(), (x, y), tmp_path, rtol=1e-4, atol=1e-4)


def more_ops(x):  # (3, 4)
    m = (
        x.amin(dim=1)
        + x.min(dim=1)[0]
        + x.prod(dim=1)
        + x.sign().sum(1)
        + x.ceil().mean(1)
        + x.round().sum(1)
        + x.tan().sum(1) * 0.01
        + (x * x + 1).reciprocal().sum(1)
        + x.clone().sum(1)
        + x.double().float().sum(1)
        + sum(x.unbind(1))
    )
    e = dg.einsum("ij,kj->ik", x, x) + x[:1].expand(3, 4) @ x.T
    mask = dg.tensor([True, False, True, False])  # a constant: the same in every trace
    w = (
        dg.where(mask, x, -x)
        + x.roll(1, 1)
        + x.roll(2) * 2
        + (x.abs() + 0.5) ** x
        + F.dropout(x, 0.5, training=True) * 0
    )
    return m, e, w


def test_more_reductions_shapes_and_casts(tmp_path):
    x = dg.randn(3, 4)
    path = tmp_path / "m.onnx"
    dg.onnx.export(more_ops, x, path)
    for got, want in zip(run_onnx(path, {"input": x}), more_ops(x)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_embedding_and_transformer_encoder_layer(tmp_path):
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 16)
            self.layer = nn.TransformerEncoderLayer(
                16, 4, dim_feedforward=32, dropout=0.1, batch_first=True, activation="gelu"
            )
            self.head = nn.Linear(16, 3)

        def forward(self, tokens):
            return self.head(self.layer(self.embed(tokens)))

    tokens = dg.tensor(np.random.default_rng(0).integers(0, 20, (2, 5)))
    more = dg.tensor(np.random.default_rng(1).integers(0, 20, (3, 7)))
    proto = check_export(
        Encoder(),
        (tokens,),
        tmp_path,
        others=[(more,)],
        dynamic_axes={"input": {0: "batch", 1: "seq"}},
    )
    assert {"Gather", "Softmax", "LayerNormalization", "MatMul"} <= op_types(proto)


def test_multihead_attention_weights_output(tmp_path):
    attn = nn.MultiheadAttention(8, 2)
    q, k = dg.randn(4, 2, 8), dg.randn(6, 2, 8)
    proto = check_export(
        attn,
        (q, k, k),
        tmp_path,
        others=[(dg.randn(4, 3, 8), dg.randn(6, 3, 8), dg.randn(6, 3, 8))],
        input_names=["q", "k", "v"],
        output_names=["out", "weights"],
        dynamic_axes={"q": {1: "batch"}, "k": {1: "batch"}, "v": {1: "batch"}},
    )
    weights = proto.graph.output[1].type.tensor_type.shape.dim  # (batch, L, S)
    assert [weights[0].dim_param, weights[1].dim_value, weights[2].dim_value] == ["batch", 4, 6]


def test_static_shapes_without_dynamic_axes(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (2, 2)), nn.Flatten())
    proto = check_export(model, (dg.randn(3, 4),), tmp_path)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [3, 4]


class Cube(Op):
    @staticmethod
    def forward(ctx, x):
        return x**3

    @staticmethod
    def backward(ctx, g):
        raise NotImplementedError


def test_unsupported_op_raises_naming_it(tmp_path):
    class WithCube(nn.Module):
        def forward(self, x):
            return Cube.apply(x) + 1

    with pytest.raises(
        dg.onnx.UnsupportedOperatorError,
        match=r"does not support the op 'Cube' \(.*Cube\).*test_export.py.*"
        r"supported: .*Linear",
    ):
        dg.onnx.export(WithCube(), dg.randn(2, 2), tmp_path / "m.onnx")
    with pytest.raises(dg.onnx.UnsupportedOperatorError, match="'Unfold'"):
        dg.onnx.export(lambda x: F.unfold(x, 2), dg.randn(1, 1, 3, 3), tmp_path / "m.onnx")


def test_a_registered_converter_exports_a_user_op(tmp_path, monkeypatch):
    from distgrad.onnx import converters

    monkeypatch.setitem(converters.CONVERTERS, Cube, None)  # removed again after the test

    @dg.onnx.converter(Cube)
    def cube(node):
        x = node.input(0)
        node.g.op("Mul", [node.g.op("Mul", [x, x]), x], node.out())

    assert "Cube" in dg.onnx.supported_ops()
    check_export_fn(lambda x: Cube.apply(x) + 1, dg.randn(3), tmp_path)


def test_ops_not_reaching_the_outputs_are_not_exported(tmp_path):
    def fn(x):
        Cube.apply(x)  # unsupported, but unused
        return x * 2

    proto = check_export_fn(fn, dg.randn(3), tmp_path)
    assert op_types(proto) == {"Mul"}


def check_export_fn(fn, x, tmp_path):
    path = tmp_path / "fn.onnx"
    proto = dg.onnx.export(fn, x, path)
    got = run_onnx(path, {"input": x})[0]
    np.testing.assert_allclose(got, fn(x).numpy(), rtol=1e-6)
    return proto


def test_value_computed_outside_ops_raises(tmp_path):
    def masked(x):  # the comparison is not an op: its result would be frozen
        return dg.where(x > 0, x, x * 0.1)

    with pytest.raises(RuntimeError, match="computed outside distgrad's ops"):
        dg.onnx.export(masked, dg.randn(4, 4), tmp_path / "m.onnx")


def test_data_dependent_control_flow_raises(tmp_path):
    def branchy(x):
        return x * 2 if float(x.sum()) > 0 else x.exp()

    x = dg.full((3, 3), -0.5 / 9)  # the second trace's inputs sum to a positive number
    with pytest.raises(RuntimeError, match="control flow depends on its inputs"):
        dg.onnx.export(branchy, x, tmp_path / "m.onnx")


def test_shape_frozen_without_dynamic_axes_raises_for_a_size_dependent_argument(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4))

    def cut(x):  # the slice bound is a Python int taken from the shape
        return model(x)[: x.shape[0] - 1]

    with pytest.raises(RuntimeError, match="changes with the dynamic axes"):
        dg.onnx.export(cut, dg.randn(3, 4), tmp_path / "m.onnx", dynamic_axes={"input": {0: "n"}})


def test_bad_dynamic_axes_name(tmp_path):
    with pytest.raises(ValueError, match="neither input names"):
        dg.onnx.export(
            nn.Linear(2, 2), dg.randn(1, 2), tmp_path / "m.onnx", dynamic_axes={"x": {0: "n"}}
        )


def test_opset_18_reductions(tmp_path):
    def fn(x):
        return (
            x.mean(dim=1)
            + x.amax(dim=1)
            + F.layer_norm(x, (3,)).sum(dim=1)
            + x.norm(dim=1)
            + dg.logsumexp(x, 1) * math.pi
        )

    path = tmp_path / "m.onnx"
    proto = dg.onnx.export(fn, dg.randn(2, 3), path, opset_version=18)
    assert proto.opset_import[0].version == 18
    x = dg.randn(2, 3)
    np.testing.assert_allclose(run_onnx(path, {"input": x})[0], fn(x).numpy(), rtol=1e-5, atol=1e-6)
