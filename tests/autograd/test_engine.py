"""The backward engine: accumulation, graph freeing, hooks and their order, callbacks,
autograd.grad, higher-order gradients, deep graphs."""

import threading

import numpy as np
import pytest

import distgrad as dg
from distgrad.autograd import graph


def leaf(values, dtype=dg.float64):
    return dg.tensor(values, dtype=dtype, requires_grad=True)


def test_simple_gradients_and_accumulation():
    x = leaf([1.0, 2.0, 3.0])
    w = leaf([0.5, -1.0, 2.0])
    (x * w + x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.5 + 2, -1 + 4, 2 + 6])
    np.testing.assert_allclose(w.grad.numpy(), [1, 2, 3])
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.5, 5, 10])


def test_leaf_grads_never_alias_each_other_or_the_user_gradient():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    seed = dg.tensor([1.0, 1.0], dtype=dg.float64)
    (a + b).backward(seed)
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    assert not np.shares_memory(a.grad.numpy(), seed.numpy())
    with dg.no_grad():
        a.grad.mul_(10)
    np.testing.assert_allclose(b.grad.numpy(), [1, 1])
    np.testing.assert_allclose(seed.numpy(), [1, 1])


def test_second_backward_through_freed_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4, 8])


def test_non_scalar_backward_needs_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        (x * 2).backward()


def test_gradient_of_wrong_shape_names_both_shapes():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"grad_output\[0\] has a shape of \[3\].*\[2\]"):
        (x * 2).backward(dg.ones(3, dtype=dg.float64))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        dg.tensor([1.0]).sum().backward()


def test_inplace_change_of_saved_tensor_is_detected():
    x = leaf([1.0, 2.0])
    y = x * 1
    z = y * y  # saves y
    y.add_(1)
    with pytest.raises(
        RuntimeError, match="modified by an inplace operation.*version 1; expected version 0"
    ):
        z.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises_and_leaves_it_unchanged():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1)
    np.testing.assert_allclose(x.detach().numpy(), [1, 2])
    with dg.no_grad():
        x.add_(1)
    np.testing.assert_allclose(x.detach().numpy(), [2, 3])


def test_inplace_on_non_leaf_records_graph():
    x = leaf([1.0, 2.0])
    y = x * 2
    y.mul_(x)  # y = 2x * x
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4, 8])
    assert y.grad_fn.name() == "MulBackward"


def test_version_counter_counts_inplace_ops():
    x = dg.zeros(3)
    assert x._version_value == 0
    x.add_(1)
    x[0] = 5
    assert x._version_value == 2


def test_grad_of_non_leaf_warns_and_retain_grad_populates_it():
    x = leaf([1.0, 2.0])
    y = x * 3
    with pytest.warns(UserWarning, match="not a leaf Tensor"):
        assert y.grad is None
    z = x * 3
    z.retain_grad()
    (z * z).sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), [6, 12])


def test_hook_order_matches_pytorch():
    calls = []
    x = leaf([1.0, 2.0])
    y = x * 2
    y.retain_grad()  # registered first, but retain_grad hooks run after tensor hooks
    y.register_hook(lambda g: calls.append(("tensor_hook", g.numpy().tolist())) or g * 10)
    y.grad_fn.register_prehook(lambda gs: calls.append("node_prehook"))
    y.grad_fn.register_hook(lambda gi, go: calls.append("node_posthook"))
    x.register_hook(lambda g: calls.append("leaf_hook"))
    x.register_post_accumulate_grad_hook(
        lambda t: calls.append(("post_acc", t.grad.numpy().tolist()))
    )
    y.sum().backward()
    assert calls == [
        ("tensor_hook", [1.0, 1.0]),
        "node_prehook",
        "node_posthook",
        "leaf_hook",
        ("post_acc", [20.0, 20.0]),
    ]
    np.testing.assert_allclose(y.grad.numpy(), [10, 10])  # retain_grad sees the hooked grad


def test_hook_removal():
    calls = []
    x = leaf([1.0])
    handle = x.register_hook(lambda g: calls.append(1))
    handle.remove()
    (x * 1).sum().backward()
    assert calls == []


def test_post_accumulate_hook_fires_once_with_final_grad():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (x * 2 + x * 3 + x).sum().backward()  # three paths into x
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], [6, 6])


def test_final_callback_runs_after_all_nodes():
    order = []
    a, b = leaf([1.0]), leaf([2.0])

    def hook(t):
        order.append("a")
        graph.queue_callback(lambda: order.append(("callback", b.grad.item())))

    a.register_post_accumulate_grad_hook(hook)
    b.register_post_accumulate_grad_hook(lambda t: order.append("b"))
    (a * 2 + b * 3).sum().backward()
    assert set(order[:2]) == {"a", "b"} and order[2] == ("callback", 3.0)


def test_queue_callback_outside_backward_raises():
    with pytest.raises(RuntimeError, match="during a backward"):
        graph.queue_callback(lambda: None)


def test_will_execute_knows_unreached_leaves():
    a, b = leaf([1.0]), leaf([2.0])
    seen = {}

    def hook(t):
        seen["a"] = graph.will_execute(a._edge()[0])
        seen["b"] = graph.will_execute(b._edge()[0])

    a.register_post_accumulate_grad_hook(hook)
    (a * 2).sum().backward()
    assert seen == {"a": True, "b": False}


def test_autograd_grad_leaves_dot_grad_untouched():
    x = leaf([1.0, 2.0])
    y = (x**3).sum()
    (g,) = dg.autograd.grad(y, x)
    np.testing.assert_allclose(g.numpy(), [3, 12])
    assert x.grad is None


def test_autograd_grad_of_non_leaf_input():
    x = leaf([1.0, 2.0])
    h = x * 2
    y = (h * h).sum()
    (gh,) = dg.autograd.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), [4, 8])


def test_autograd_grad_unused_input():
    x, z = leaf([1.0]), leaf([1.0])
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="appears to not have been used"):
        dg.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = dg.autograd.grad(y, [x, z], allow_unused=True)
    assert gz is None and gx.item() == 2


def test_grad_outputs_must_match_outputs():
    x = leaf([1.0, 2.0])
    y1, y2 = (x * 2).sum(), (x * 3).sum()
    with pytest.raises(RuntimeError, match="got 1 gradients for 2 tensors"):
        dg.autograd.grad([y1, y2], x, grad_outputs=[dg.tensor(1.0, dtype=dg.float64)])


def test_numpy_array_of_tensor_copies_and_asarray_shares():
    t = dg.tensor([1.0, 2.0])
    np.array(t)[0] = 9
    assert t.tolist() == [1.0, 2.0]
    np.asarray(t)[0] = 9
    assert t.tolist() == [9.0, 2.0]


def test_higher_order_gradients():
    x = leaf([1.5, -0.5])
    y = (x**3).sum()
    (g,) = dg.autograd.grad(y, x, create_graph=True)
    np.testing.assert_allclose(g.detach().numpy(), 3 * np.array([1.5, -0.5]) ** 2)
    (gg,) = dg.autograd.grad(g.sum(), x, create_graph=True)
    np.testing.assert_allclose(gg.detach().numpy(), 6 * np.array([1.5, -0.5]))
    (ggg,) = dg.autograd.grad(gg.sum(), x)
    np.testing.assert_allclose(ggg.numpy(), [6, 6])


def test_backward_with_create_graph_builds_graph_in_dot_grad():
    x = leaf([2.0])
    (x**2).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (gg,) = dg.autograd.grad(x.grad.sum(), x)
    assert gg.item() == 2


def test_backward_inputs_only_accumulates_into_those():
    a, b = leaf([1.0]), leaf([2.0])
    (a * b).sum().backward(inputs=[a])
    assert a.grad.item() == 2 and b.grad is None


@pytest.mark.slow
def test_long_chain_does_not_recurse():
    x = leaf([1.0])
    y = x
    for _ in range(100_000):
        y = y + 1e-6
    y.sum().backward()
    assert x.grad.item() == 1.0
    del y


def test_detach_and_data_share_storage():
    x = leaf([1.0, 2.0])
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    x.data.add_(1)  # allowed: .data is outside autograd
    np.testing.assert_allclose(d.numpy(), [2, 3])
    assert x._version_value == 0


def test_requires_grad_only_for_float():
    with pytest.raises(RuntimeError, match="only Tensors of floating point dtype"):
        dg.tensor([1, 2], requires_grad=True)


def test_numpy_of_tensor_requiring_grad_raises():
    with pytest.raises(RuntimeError, match="detach"):
        leaf([1.0]).numpy()


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_anomaly_mode_names_forward_op():
    x = leaf([0.0, 1.0])
    with dg.autograd.detect_anomaly():
        y = dg.sqrt(x)  # d/dx sqrt(0) = inf
        with pytest.raises(
            RuntimeError, match="(?s)SqrtBackward.*nan or inf.*test_engine.py.*dg.sqrt"
        ):
            y.sum().backward()


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_anomaly_mode_without_check_nan_does_not_raise():
    x = leaf([0.0, 1.0])
    with dg.autograd.detect_anomaly(check_nan=False):
        dg.sqrt(x).sum().backward()
    assert np.isinf(x.grad.numpy()[0])


def test_grad_modes():
    x = leaf([1.0])
    with dg.no_grad():
        assert not (x * 2).requires_grad
        with dg.enable_grad():
            assert (x * 2).requires_grad
    with dg.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert dg.is_grad_enabled()
    with dg.inference_mode():
        assert not (x * 2).requires_grad
        assert dg.autograd.is_inference_mode_enabled()

    @dg.no_grad()
    def f():
        return x * 2

    assert not f().requires_grad and dg.is_grad_enabled()


def test_grad_mode_is_thread_local():
    x = leaf([1.0])
    result = {}

    def worker():
        result["requires_grad"] = (x * 2).requires_grad

    with dg.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert result["requires_grad"] is True


def test_next_functions_expose_the_graph():
    x = leaf([1.0])
    y = x * 2 + 1
    add = y.grad_fn
    assert add.name() == "AddBackward"
    mul, _ = add.next_functions[0]
    assert mul.name() == "MulBackward"
    acc = mul.next_functions[0][0]
    assert acc.name() == "AccumulateGrad" and acc.variable is x


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_backward_inputs_runs_leaf_hooks_and_fills_non_leaf_inputs():
    a, b = leaf([1.0]), leaf([2.0])
    fired = []
    a.register_post_accumulate_grad_hook(lambda t: fired.append(t.grad.item()))
    h = a * 3
    (h * b).sum().backward(inputs=[a, h])
    assert fired == [6.0] and b.grad is None
    assert h.grad.item() == 2.0
