"""autograd.graph.saved_tensors_hooks / save_on_cpu: PyTorch's semantics, against torch where
installed."""

import numpy as np
import pytest

import distgrad as dg
from distgrad.autograd import Function
from distgrad.autograd.graph import save_on_cpu, saved_tensors_hooks


def _model(lib, x, w, b):
    h = (x @ w + b).tanh()
    return (h * h.sigmoid()).exp().sum() + (x * w.sum()).sin().sum()


def _inputs(lib, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in ((4, 3), (3, 5), (5,))]
    if lib is dg:
        return [dg.tensor(a, requires_grad=True) for a in arrays]
    return [lib.tensor(a, requires_grad=True) for a in arrays]


class _Counting:
    """Identity hooks that count calls; unpack checks it gets what pack returned."""

    def __init__(self):
        self.packed, self.unpacked = [], []

    def pack(self, t):
        token = ("token", len(self.packed))
        self.packed.append(t)
        return token

    def unpack(self, token):
        self.unpacked.append(token)
        return self.packed[token[1]]


def _grads(lib, hooks=None, create_graph=False):
    x, w, b = _inputs(lib)
    if hooks is None:
        y = _model(lib, x, w, b)
    else:
        with hooks:
            y = _model(lib, x, w, b)
    gs = lib.autograd.grad(y, (x, w, b), create_graph=create_graph)
    return (x, w, b), gs


def test_pack_unpack_once_per_saved_tensor_and_gradients_equal():
    count = _Counting()
    _, plain = _grads(dg)
    _, hooked = _grads(dg, saved_tensors_hooks(count.pack, count.unpack))
    assert len(count.packed) > 5
    assert sorted(count.unpacked) == [("token", i) for i in range(len(count.packed))]
    for a, b in zip(plain, hooked):
        np.testing.assert_array_equal(a.array, b.array)  # float64, identical arithmetic


def test_every_saved_value_of_a_node_is_packed_and_the_hook_sees_tensors():
    seen = []
    x = dg.randn(3, 4, dtype=dg.float64, requires_grad=True)
    w = dg.randn(4, 2, dtype=dg.float64, requires_grad=True)
    with saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        y = x @ w
    assert len(seen) == 2 and all(isinstance(t, dg.Tensor) for t in seen)
    assert {id(t.array) for t in seen} == {id(x.array), id(w.array)}
    y.sum().backward()
    np.testing.assert_allclose(x.grad.array, np.ones((3, 2)) @ w.array.T)


def test_double_backward_through_packed_tensors():
    count = _Counting()
    (x, w, b), plain = _grads(dg, create_graph=True)
    plain2 = dg.autograd.grad(sum(g.sum() for g in plain), (x, w, b))
    (x, w, b), hooked = _grads(dg, saved_tensors_hooks(count.pack, count.unpack), create_graph=True)
    hooked2 = dg.autograd.grad(sum(g.sum() for g in hooked), (x, w, b))
    for a, c in zip(plain2, hooked2):
        np.testing.assert_allclose(a.array, c.array, rtol=1e-13, atol=1e-13)


def test_hook_returning_a_copy_and_unpack_rebuilding():
    kinds = []

    def pack(t):
        kinds.append(type(t.array))
        return np.array(t.array, copy=True)  # something else: a numpy copy

    def unpack(a):
        return dg.tensor(a)

    _, plain = _grads(dg)
    _, hooked = _grads(dg, saved_tensors_hooks(pack, unpack))
    assert kinds and all(k is np.ndarray for k in kinds)
    for a, b in zip(plain, hooked):
        np.testing.assert_array_equal(a.array, b.array)


def test_user_function_saved_tensors_are_packed():
    class Cube(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x * x * g

    count = _Counting()
    x = dg.tensor([1.0, 2.0, -3.0], dtype=dg.float64, requires_grad=True)
    with saved_tensors_hooks(count.pack, count.unpack):
        y = Cube.apply(x)
    assert len(count.packed) == 1 and count.packed[0] is x
    (g,) = dg.autograd.grad(y.sum(), x, create_graph=True)
    np.testing.assert_array_equal(g.array, 3 * x.array**2)
    (gg,) = dg.autograd.grad(g.sum(), x)
    np.testing.assert_array_equal(gg.array, 6 * x.array)


def test_nested_innermost_wins_and_exit_restores():
    outer, inner = [], []
    x = dg.randn(3, dtype=dg.float64, requires_grad=True)
    with saved_tensors_hooks(lambda t: outer.append(1) or t, lambda t: t):
        a = x.exp()
        with saved_tensors_hooks(lambda t: inner.append(1) or t, lambda t: t):
            b = x.sin()
        c = x.cos()
    d = x.tanh()
    assert len(outer) == 2 and len(inner) == 1
    (a + b + c + d).sum().backward()
    expected = np.exp(x.array) + np.cos(x.array) - np.sin(x.array) + 1 - np.tanh(x.array) ** 2
    np.testing.assert_allclose(x.grad.array, expected, rtol=1e-14)


def test_save_on_cpu_gradients_equal():
    _, plain = _grads(dg)
    _, hooked = _grads(dg, save_on_cpu())
    _, pinned = _grads(dg, save_on_cpu(pin_memory=True))
    for a, b, c in zip(plain, hooked, pinned):
        np.testing.assert_array_equal(a.array, b.array)
        np.testing.assert_array_equal(a.array, c.array)


def test_inplace_change_after_identity_pack_is_caught():
    x = dg.randn(3, dtype=dg.float64, requires_grad=True)
    with saved_tensors_hooks(lambda t: t, lambda t: t):
        y = x.exp()  # saves its output
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_change_of_a_packed_copy_is_not_seen():
    x = dg.randn(3, dtype=dg.float64, requires_grad=True)
    with saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
        y = x.exp()
    y.add_(1)
    y.sum().backward()  # the copy was saved: the gradient is that of the original exp
    np.testing.assert_allclose(x.grad.array, y.detach().array - 1, rtol=1e-14)


def test_unpack_must_return_a_tensor():
    x = dg.randn(3, requires_grad=True)
    with saved_tensors_hooks(lambda t: t, lambda t: 3):
        y = x.exp()
    with pytest.raises(TypeError, match="unpack_hook expected to be a Tensor"):
        y.sum().backward()


def test_pack_must_not_change_its_input_in_place():
    x = dg.randn(3, requires_grad=True)
    with saved_tensors_hooks(lambda t: t.add_(1), lambda t: t):
        with pytest.raises(RuntimeError, match="pack hook is modifying its input in place"):
            x.detach().exp() * x


def test_backward_twice_after_packing_raises_and_retain_graph_unpacks_again():
    count = _Counting()
    x = dg.randn(3, dtype=dg.float64, requires_grad=True)
    with saved_tensors_hooks(count.pack, count.unpack):
        y = x.exp().sum()
    y.backward(retain_graph=True)
    y.backward()
    assert len(count.unpacked) == 2 * len(count.packed)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


# ---- against torch ----------------------------------------------------------------------


def test_matches_torch_gradients_and_pack_counts_for_a_matmul():
    torch = pytest.importorskip("torch")
    for lib in (dg, torch):
        count = _Counting()
        (x, w, b), gs = _grads(lib, saved_tensors_hooks_of(lib)(count.pack, count.unpack))
        if lib is dg:
            ours = [g.array for g in gs]
        else:
            theirs = [g.detach().numpy() for g in gs]
        assert sorted(count.unpacked) == [("token", i) for i in range(len(count.packed))]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def saved_tensors_hooks_of(lib):
    return saved_tensors_hooks if lib is dg else lib.autograd.graph.saved_tensors_hooks


def test_inplace_checks_against_torch():
    """A packed copy: the original's later change does not matter (as torch). The tensor itself
    packed and changed in place: torch skips its version check under hooks and returns a wrong
    gradient silently; distgrad keeps the check (documented in saved_tensors_hooks)."""
    torch = pytest.importorskip("torch")
    grads = {}
    for lib in (dg, torch):
        for copy in (False, True):
            x = lib.tensor([0.5, -1.0, 2.0], dtype=lib.float64, requires_grad=True)
            pack = (lambda t: t.clone()) if copy else (lambda t: t)
            with saved_tensors_hooks_of(lib)(pack, lambda t: t):
                y = x.exp()
            with lib.no_grad():
                y.add_(1)
            try:
                y.sum().backward()
                grads[lib.__name__, copy] = np.array(x.grad.tolist())
            except RuntimeError as e:
                assert "modified by an inplace operation" in str(e)
                grads[lib.__name__, copy] = "inplace"
    exact = np.exp([0.5, -1.0, 2.0])
    np.testing.assert_allclose(grads["distgrad", True], exact, rtol=1e-14)
    np.testing.assert_allclose(grads["torch", True], exact, rtol=1e-14)
    assert grads["distgrad", False] == "inplace"
    np.testing.assert_allclose(grads["torch", False], exact + 1, rtol=1e-14)  # torch: wrong


def test_unpack_type_error_as_torch():
    torch = pytest.importorskip("torch")
    messages = []
    for lib in (dg, torch):
        x = lib.tensor([0.5, -1.0], requires_grad=True)
        with saved_tensors_hooks_of(lib)(lambda t: t, lambda t: 3):
            y = x.exp()
        with pytest.raises(TypeError) as info:
            y.sum().backward()
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_parameters_packed_as_tokens_are_really_freed_and_refilled():
    """ZeRO-3's intended use: a pack hook replaces a saved parameter by a token, the parameter's
    array is freed between forward and backward (nothing else of the graph references it; Linear
    saves the weight itself, not a view), and the unpack hook refills it."""
    import gc
    import weakref

    dg.manual_seed(0)
    model = dg.nn.Sequential(dg.nn.Linear(4, 3), dg.nn.Tanh(), dg.nn.Linear(3, 2)).double()
    params = list(model.parameters())
    x = dg.randn(5, 4, dtype=dg.float64)
    model(x).square().sum().backward()
    expected = [p.grad.array.copy() for p in params]
    model.zero_grad(set_to_none=True)

    kept = [p.array.copy() for p in params]  # the "shards" the parameters come back from
    index = {id(p.array): i for i, p in enumerate(params)}
    unpacked = []

    def pack(t):
        i = index.get(id(t.array))
        return ("param", i) if i is not None else t

    def unpack(packed):
        if isinstance(packed, tuple):
            i = packed[1]
            if params[i].array.size == 0:
                params[i].data = dg.tensor(kept[i].copy())
            unpacked.append(i)
            return params[i].detach()
        return packed

    with saved_tensors_hooks(pack, unpack):
        loss = model(x).square().sum()
    refs = [weakref.ref(p.array) for p in params]
    for p in params:
        p.data = dg.tensor(np.empty(0))
    gc.collect()
    assert [r() for r in refs] == [None] * len(params)  # really freed
    loss.backward()
    assert sorted(unpacked) == [0, 2]  # the two weights (biases are not saved)
    for p, e in zip(params, expected):
        np.testing.assert_array_equal(p.grad.array, e)
