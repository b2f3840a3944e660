"""Buffer planning in replays: outputs and input gradients go into arrays reused across
replays (and within one, once dead), bit-identical to eager, and never into an array that
anything still holds."""

import copy

import numpy as np
import pytest

import distgrad as dg
import distgrad.nn.functional as F
from distgrad import jit, nn
from distgrad.jit import graph as graph_module
from tests.jit.eager_twin import train_side_by_side


@pytest.fixture(autouse=True)
def _float64_and_small_buffers(monkeypatch):
    dg.set_default_dtype(dg.float64)
    monkeypatch.setattr(graph_module, "PLAN_BYTES", 0)  # plan the tests' small arrays too
    yield
    dg.set_default_dtype(dg.float32)


class Block(nn.Module):
    """conv - batch norm - relu - conv - batch norm + identity - relu - pool - linear: every op
    that writes into a buffer (Conv, Normalize, ReLU, Add, Mul, Linear, Matmul)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 6)
        self.proj = nn.Parameter(dg.randn(6, 5))
        self.norm = nn.LayerNorm(5)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)) + x)
        out = F.max_pool2d(out * 0.5, 2)
        return self.norm(self.fc(out.flatten(1)) @ self.proj)


def arena_ids(traced):
    """ids of the arrays the graph's planned ops write into."""
    return set(traced.graph._arena.ids)


def planned_ops(traced):
    """Names of the ops whose output / input gradient went into a reused buffer."""
    graph = traced.graph
    fwd = {op.fn.__name__ for op in graph.ops if op.planned}
    bwd = {graph.ops[i].fn.__name__ for i, meta in graph._grad_meta.items() if meta}
    return fwd, bwd


def sgd(params):
    return dg.optim.SGD(params, lr=0.1, momentum=0.9)


def test_step_replays_into_reused_buffers_exactly_as_eager():
    model = Block()
    batches = [(dg.randn(4, 3, 8, 8), dg.randint(0, 5, (4,))) for _ in range(4)]
    seen = []

    def same_arrays(n, step):
        ids = arena_ids(step.forward)
        if n >= 2:  # (the first replay learns the gradients' shapes: buffers from the second)
            assert ids == seen[-1]  # the same arrays, written again
        seen.append(ids)

    twin, step = train_side_by_side(model, batches, sgd, stateful=True, after_replay=same_arrays)
    seen = seen[-1]
    fwd, bwd = planned_ops(step.forward)
    assert {"Conv", "Normalize", "ReLU", "Add", "Mul", "Linear", "Matmul"} <= fwd
    assert {"Conv", "Normalize", "ReLU", "Linear", "CrossEntropy"} <= bwd
    graph = step.forward.graph
    # scratch (work buffers) only where used: layer norm's general path, not batch norm's
    assert [op.work for op in graph.ops if op.fn.__name__ == "Normalize"] == [False, False, True]
    planned = sum(op.planned for op in graph.ops) + sum(map(bool, graph._grad_meta.values()))
    assert 0 < len(seen) < planned  # dead arrays were handed out again within a replay
    for a, b in zip(twin.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    for a, b in zip(twin.buffers(), model.buffers()):
        if a.is_floating_point():  # running statistics (num_batches_tracked is not replayed)
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_returned_values_and_their_views_are_never_overwritten():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    # the logits are returned through a view (flatten) of the last Linear's output, and the
    # hidden activation as is
    traced = jit.trace(lambda x: (model(x).flatten(), F.relu(model[0](x))), dg.randn(2, 4))
    xs = [dg.randn(2, 4) for _ in range(5)]
    held = []
    sizes = []
    for x in xs:
        logits, hidden = traced(x)
        logits.sum().backward()
        held.append((logits, hidden))
        sizes.append(len(arena_ids(traced)))
    assert sizes[1] == sizes[-1]  # what the caller keeps is taken out of the arena
    for x, (logits, hidden) in zip(xs, held):
        np.testing.assert_array_equal(logits.detach().numpy(), model(x).flatten().detach().numpy())
        np.testing.assert_array_equal(hidden.detach().numpy(), F.relu(model[0](x)).detach().numpy())
    with dg.no_grad():  # no backward: the ctx set goes back at once, outputs still kept
        outs = [traced(x)[0] for x in xs]
        for x, out in zip(xs, outs):
            np.testing.assert_array_equal(out.numpy(), model(x).flatten().numpy())


def test_gradients_leaving_the_replay_are_not_buffers():
    w = dg.randn(5, requires_grad=True)
    # relu's input gradient is written (into its buffer) straight into x's gradient slot
    traced = jit.trace(lambda x: (F.relu(x) * w).sum(), dg.randn(5, requires_grad=True))
    xs = [dg.randn(5, requires_grad=True) for _ in range(3)]
    for x in xs:
        traced(x).backward()
    given = []
    sizes = []
    for x in xs:  # no .grad copy on the way; the caller keeps each gradient
        given.append(dg.autograd.grad(traced(x), x)[0])
        sizes.append(len(arena_ids(traced)))
    assert sizes[0] == sizes[-1]  # what the caller keeps is not the arena's (copied out)
    for x, g in zip(xs, given):
        expected = (x.detach().numpy() > 0) * w.detach().numpy()
        np.testing.assert_array_equal(x.grad.numpy(), expected)
        np.testing.assert_array_equal(g.numpy(), expected)
    assert "ReLU" in planned_ops(traced)[1] and arena_ids(traced)


def test_retained_replay_keeps_its_saved_values_while_later_replays_run():
    model = Block()
    traced = jit.trace(model, dg.randn(2, 3, 8, 8))
    xs = [dg.randn(2, 3, 8, 8) for _ in range(3)]
    traced(xs[0]).sum().backward()  # fills the pool's buffers
    model.zero_grad()
    first = traced(xs[1]).sum()  # writes into those buffers and keeps them (retain_graph)
    first.backward(retain_graph=True)
    got_first = [p.grad.numpy().copy() for p in model.parameters()]
    for x in xs:  # later replays take other ctx sets and buffers
        traced(x).sum().backward()
    model.zero_grad()
    first.backward()  # the saved values of `first` are intact
    for a, p in zip(got_first, model.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), a)


class TinyLM(nn.Module):
    """The transformer LM of the benchmarks, small: softmax, split, batched matmuls, layer
    norm, cross entropy all replay into buffers."""

    def __init__(self, vocab=11, d=8, seq=6):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.layer = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", dg.triu(dg.full((seq, seq), float("-inf")), diagonal=1))

    def forward(self, idx):
        return self.head(self.layer(self.tok(idx), src_mask=self.mask)).flatten(0, 1)


def test_transformer_step_replays_into_buffers_exactly_as_eager():
    model = TinyLM()
    batches = [(dg.randint(0, 11, (3, 6)), dg.randint(0, 11, (18,))) for _ in range(4)]
    twin, step = train_side_by_side(model, batches, sgd)
    fwd, bwd = planned_ops(step.forward)
    assert {"Softmax", "Linear", "Matmul", "Normalize"} <= fwd
    assert {"Softmax", "CrossEntropy", "Matmul", "Split", "Linear"} <= bwd
    for a, b in zip(twin.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_small_outputs_are_allocated_as_in_eager(monkeypatch):
    monkeypatch.setattr(graph_module, "PLAN_BYTES", 64 << 10)
    w = dg.randn(4, requires_grad=True)
    x = dg.randn(4)
    traced = jit.trace(lambda x: (x * w).tanh().sum(), x)
    traced(x).backward()
    assert planned_ops(traced) == (set(), set()) and not arena_ids(traced)
    big = dg.randn(128, 128)
    traced = jit.trace(lambda x: (x * w.sum()).relu().sum(), big)
    traced(big).backward()
    assert planned_ops(traced) == ({"Mul", "ReLU"}, {"ReLU"}) and arena_ids(traced)


def test_buffer_planning_can_be_switched_off():
    model = Block()
    twin = copy.deepcopy(model)
    x = dg.randn(2, 3, 8, 8)
    on, off = jit.trace(model, x), jit.trace(twin, x)
    off.graph.buffer_planning = False
    for _ in range(3):
        a, b = on(x), off(x)
        a.sum().backward()
        b.sum().backward()
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    assert arena_ids(on) and not arena_ids(off) and not off.graph.buffer_planning
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_cross_entropy_keeps_its_softmax_for_the_replayed_backward(monkeypatch):
    from distgrad.ops import loss as loss_module

    calls = []
    shift = loss_module.logsumexp_shift
    monkeypatch.setattr(loss_module, "logsumexp_shift", lambda *a: calls.append(1) or shift(*a))
    model = TinyLM()
    x, y = dg.randint(0, 11, (3, 6)), dg.randint(0, 11, (18,))
    step = jit.trace_step(
        lambda x, y: F.cross_entropy(model(x), y), (x, y), dg.optim.SGD(model.parameters(), lr=0.1)
    )
    for _ in range(2):  # the first replay learns the gradient's shape
        step(x, y)
    calls.clear()
    step(x, y)
    assert len(calls) == 1  # forward's exp(z) (work buffer) served the backward
    step.forward.graph.buffer_planning = False
    calls.clear()
    step(x, y)
    assert len(calls) == 2  # unplanned, the backward recomputes it as eager does


def test_linear_of_a_permuted_input_copies_into_a_reused_work_buffer():
    from distgrad.ops.linalg import Linear

    model = TinyLM()
    x = dg.randint(0, 11, (3, 6))
    traced = jit.trace(model, x)
    for _ in range(3):
        traced(x).sum().backward()
    graph = traced.graph
    linears = [op for op in graph.ops if op.fn is Linear]
    # only the attention's input projection reads a permuted (non-contiguous) stack
    assert [op.work for op in linears] == [True, False, False, False, False]
    sizes = len(arena_ids(traced))
    traced(x).sum().backward()
    assert len(arena_ids(traced)) == sizes
    model.zero_grad()
    twin = copy.deepcopy(model)
    traced(x).sum().backward()
    twin(x).sum().backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


@pytest.mark.filterwarnings("ignore:argument")  # ignore_index: the traced target is kept
@pytest.mark.parametrize(
    "kwargs", [{"ignore_index": 3}, {"label_smoothing": 0.1}, {"reduction": "sum"}]
)
def test_cross_entropy_variants_replay_exactly_as_eager(kwargs):
    model = TinyLM()
    # one target for all steps: the trace keeps the weights it derives from ignored targets
    y = dg.randint(0, 11, (18,))
    y.numpy()[:4] = 3  # a few ignored targets (ignore_index=3)
    batches = [(dg.randint(0, 11, (3, 6)), y) for _ in range(4)]
    twin, _ = train_side_by_side(
        model, batches, sgd, loss_fn=lambda out, y: F.cross_entropy(out, y, **kwargs)
    )
    for a, b in zip(twin.parameters(), model.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
