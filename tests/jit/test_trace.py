"""Graph mode: traced replays give exactly the eager outputs and gradients (float64)."""

import copy

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F
from distgrad import jit, nn
from distgrad.autograd import Function
from tests.jit.eager_twin import train_side_by_side


@pytest.fixture(autouse=True)
def _float64():
    dg.set_default_dtype(dg.float64)
    yield
    dg.set_default_dtype(dg.float32)


def grads(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def eager_and_traced(make, loss_fn, batches, seed=1):
    """Run ``loss_fn(model, *batch)`` eagerly on one model and through a trace (taken on the
    first batch) on an identical copy; compare loss and gradients on every batch."""
    model = make()
    twin = copy.deepcopy(model)
    dg.manual_seed(0)
    traced = jit.trace(lambda *b: loss_fn(twin, *b), batches[0])
    dg.manual_seed(0)
    loss_fn(model, *batches[0])  # tracing ran one forward (batch norm statistics moved)
    for i, batch in enumerate(batches):
        for m in (model, twin):
            m.zero_grad()
        dg.manual_seed(seed + i)
        eager = loss_fn(model, *batch)
        eager.backward()
        dg.manual_seed(seed + i)
        replay = traced(*batch)
        replay.backward()
        np.testing.assert_array_equal(replay.detach().numpy(), eager.detach().numpy())
        assert_same(grads(twin), grads(model))
    return model, twin, traced


def mlp():
    return nn.Sequential(
        nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5)
    )


def batch(n=8, features=12, classes=5):
    return dg.randn(n, features), dg.randint(0, classes, (n,))


def test_mlp_outputs_and_gradients_equal_eager():
    _, _, traced = eager_and_traced(
        mlp, lambda m, x, y: F.cross_entropy(m(x), y), [batch() for _ in range(3)]
    )
    assert traced.graph.has_backward and len(traced.graph) == 6
    assert "CrossEntropy" in str(traced.graph)


def test_cnn_with_batchnorm_and_pooling_equals_eager():
    def cnn():
        return nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4, 3),
        )

    batches = [(dg.randn(4, 2, 6, 6), dg.randint(0, 3, (4,))) for _ in range(2)]
    model, twin, _ = eager_and_traced(cnn, lambda m, x, y: F.cross_entropy(m(x), y), batches)
    # the running statistics are updated inside the op, so replays update them too
    np.testing.assert_array_equal(twin[1].running_mean.numpy(), model[1].running_mean.numpy())
    np.testing.assert_array_equal(twin[1].running_var.numpy(), model[1].running_var.numpy())


def test_dropout_masks_are_redrawn_per_replay_like_eager():
    def make():
        return nn.Sequential(nn.Linear(12, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 5))

    x, y = batch()
    model, twin, traced = eager_and_traced(
        make, lambda m, x, y: F.mse_loss(m(x).sum(1), y * 1.0), [(x, y)] * 3
    )
    dg.manual_seed(5)
    a = traced(x, y).item()
    dg.manual_seed(6)
    assert traced(x, y).item() != a  # a fresh mask from the stream, not the traced one
    dg.manual_seed(5)
    assert traced(x, y).item() == a


def test_module_trace_reads_parameters_live():
    model = mlp()
    x = dg.randn(4, 12)
    traced = jit.trace(model, x)
    opt = dg.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        traced(x).sum().backward()
        opt.step()
        np.testing.assert_array_equal(traced(x).detach().numpy(), model(x).detach().numpy())
    with dg.no_grad():
        model[0].weight.mul_(0.5)
    np.testing.assert_array_equal(traced(x).detach().numpy(), model(x).detach().numpy())
    assert "0.weight" in str(traced.graph)


def test_trace_step_equals_eager_training():
    for make_opt in (
        lambda p: dg.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: dg.optim.Adam(p, lr=0.01),
    ):
        model = mlp()
        twin, _ = train_side_by_side(model, [batch() for _ in range(4)], make_opt)
        assert_same(
            [p.numpy(force=True) for p in twin.parameters()],
            [p.numpy(force=True) for p in model.parameters()],
        )


def test_inputs_must_match_the_trace():
    model = mlp()
    traced = jit.trace(model, dg.randn(4, 12))
    with pytest.raises(jit.TraceError, match=r"input 0 has shape \[5, 12\].*\[4, 12\]"):
        traced(dg.randn(5, 12))
    with pytest.raises(jit.TraceError, match="dtype float32"):
        traced(dg.randn(4, 12, dtype=dg.float32))
    with pytest.raises(jit.TraceError, match="requires_grad=True"):
        traced(dg.randn(4, 12, requires_grad=True))
    with pytest.raises(jit.TraceError, match="traced with 1 inputs, called with 2"):
        traced(dg.randn(4, 12), dg.randn(4, 12))
    model.eval()
    with pytest.raises(jit.TraceError, match="training mode"):
        traced(dg.randn(4, 12))
    with pytest.raises(TypeError, match="must be a Tensor"):
        jit.trace(model, (np.zeros((4, 12)),))


def test_input_gradients_and_several_outputs():
    w = dg.randn(3, 3, requires_grad=True)

    def fn(x, y):
        h = (x @ w).exp() * y
        return {"sum": h.sum(), "parts": (h, h.max(1).indices)}

    x, y = dg.randn(4, 3, requires_grad=True), dg.randn(4, 3)
    traced = jit.trace(fn, (x, y))
    out, ref = traced(x, y), fn(x, y)
    assert out["parts"][1].dtype == dg.int64 and not out["parts"][1].requires_grad
    np.testing.assert_array_equal(out["parts"][1].numpy(), ref["parts"][1].numpy())
    gx, gw = dg.autograd.grad(out["sum"] + out["parts"][0].pow(2).sum(), [x, w])
    rx, rw = dg.autograd.grad(ref["sum"] + ref["parts"][0].pow(2).sum(), [x, w])
    np.testing.assert_array_equal(gx.numpy(), rx.numpy())
    np.testing.assert_array_equal(gw.numpy(), rw.numpy())


def test_replays_in_flight_together_and_backward_twice():
    model = mlp()
    traced = jit.trace(model, dg.randn(4, 12))
    x1, x2 = dg.randn(4, 12), dg.randn(4, 12)
    (traced(x1) * traced(x2)).sum().backward()
    got = grads(model)
    model.zero_grad()
    (model(x1) * model(x2)).sum().backward()
    assert_same(got, grads(model))
    out = traced(x1).sum()
    out.backward(retain_graph=True)
    out.backward()
    with pytest.raises(RuntimeError, match="a second time"):
        out.backward()
    with dg.no_grad():
        assert not traced(x1).requires_grad


def test_in_place_ops_and_user_functions_replay():
    class Cube(Function):  # a user Function: sees tensors
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x * x * g

    w = dg.randn(5, requires_grad=True)

    def fn(x):
        y = x * w
        y.mul_(2)
        return Cube.apply(y).sum()

    x = dg.randn(5)
    traced = jit.trace(fn, x)
    for x in (dg.randn(5), dg.randn(5)):
        (gt,) = dg.autograd.grad(traced(x), w)
        (ge,) = dg.autograd.grad(fn(x), w)
        np.testing.assert_array_equal(gt.numpy(), ge.numpy())
    assert [op.fn.__name__ for op in traced.graph.ops] == ["Mul", "Mul", "Cube", "Sum"]


def test_unsupported_things_raise_or_warn():
    def untracked_in_place(x):
        y = x * 2
        y.add_(1)  # nothing requires grad: changes the array behind autograd's back
        return y * 3

    with pytest.raises(jit.TraceError, match="modified in place"):
        jit.trace(untracked_in_place, dg.randn(3))

    def branchy(x):
        return x * 2 if x[0].item() > 0 else x.exp()

    x = dg.tensor([1.0, -2.0, -0.5, -1.0, -3.0, -4.0])
    with pytest.warns(jit.TracerWarning, match="control flow"):
        traced = jit.trace(branchy, x)
    np.testing.assert_array_equal(traced(-x).numpy(), (-x * 2).numpy())  # path frozen

    with pytest.warns(jit.TracerWarning, match="argument 0 of Cast depends on the input values"):
        jit.trace(lambda x: x * (x > 0), x)  # comparisons are not recorded ops

    w = dg.randn(3, requires_grad=True)
    traced = jit.trace(lambda x: x * w, dg.randn(3), check_trace=False)
    with dg.no_grad():
        untraced = jit.trace(lambda x: x * w, dg.randn(3))
    with pytest.raises(jit.TraceError, match="traced under no_grad"):
        untraced(dg.randn(3))
    assert traced(dg.randn(3)).requires_grad


def test_cuda_graph_needs_cuda_tensors():
    model = mlp()
    opt = dg.optim.SGD(model.parameters(), lr=0.1)
    if dg.cuda.is_available():
        pytest.skip("covered by the GPU test")
    with pytest.raises(RuntimeError, match="cupy"):
        jit.trace_step(lambda x, y: F.cross_entropy(model(x), y), batch(), opt, cuda_graph=True)


@pytest.mark.gpu
def test_cuda_graph_step_matches_eager():
    model = mlp().to("cuda")
    twin = copy.deepcopy(model)
    opt = dg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    twin_opt = dg.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    batches = [tuple(t.to("cuda") for t in batch()) for _ in range(4)]
    step = jit.trace_step(
        lambda x, y: F.cross_entropy(twin(x), y), batches[0], twin_opt, cuda_graph=True, warmup=1
    )
    x, y = batches[0]  # the warm-up step, taken eagerly on the twin
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    for x, y in batches:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        np.testing.assert_allclose(step(x, y).item(), loss.item(), rtol=1e-10)
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.numpy(force=True), q.numpy(force=True), rtol=1e-10)


def test_traced_checkpoint_and_autocast_replay_like_eager():
    from distgrad.amp import autocast
    from distgrad.utils import checkpoint

    model = mlp()
    twin = copy.deepcopy(model)
    x = dg.randn(4, 12, requires_grad=True)
    traced = jit.trace(lambda x: checkpoint(twin, x).pow(2).sum(), x)
    assert [op.fn.__name__ for op in traced.graph.ops] == ["Checkpoint", "Square", "Sum"]
    traced(x).backward()
    checkpoint(model, x).pow(2).sum().backward()
    assert_same(grads(twin), grads(model))

    model, twin = model.float(), twin.float()
    x = dg.randn(4, 12, dtype=dg.float32)
    with autocast(dtype=dg.float16):
        traced = jit.trace(twin, x)
        eager = model(x)
    replay = traced(x)  # the casts were recorded
    assert replay.dtype == eager.dtype == dg.float16
    np.testing.assert_array_equal(replay.detach().numpy(), eager.detach().numpy())

    def inner(x):
        with autocast(dtype=dg.float16):
            return twin(x)

    with pytest.raises(jit.TraceError, match="activate it around the trace"):
        jit.trace(inner, x)
