"""The backward engine: iterative, dependency-counting, runs hooks in PyTorch's order.

Order of hooks for one node (PyTorch's documented order): tensor pre-hooks (``register_hook``),
then ``retain_grad`` hooks, then node pre-hooks, then the node's backward, then node post-hooks.
A leaf's node (``AccumulateGrad``) runs its tensor hooks, accumulates into ``.grad``, then its
post-accumulate-grad hooks: that is the moment the leaf's gradient is final for this backward.
Among ready nodes the one created last runs first (as PyTorch's CPU engine does), so parameter
hooks fire roughly in reverse order of use.
"""

from __future__ import annotations

import heapq
import sys
import threading
import weakref

from ..backend import array_module_for, is_floating
from ..backend.dtypes import bfloat16
from . import function, grad_mode
from .function import Function, _anomaly
from .tensor import Tensor

_BF16 = bfloat16.np if bfloat16 is not None else None  # numpy's bfloat16 (ml_dtypes)

__all__ = [
    "backward",
    "grad",
    "queue_callback",
    "will_execute",
    "is_backward_running",
    "retains_graph",
    "set_grad_writer",
]

# leaf -> writer(array) -> Tensor: where a leaf's first gradient of a backward goes instead of
# a new .grad (DataParallel's bucket views; see set_grad_writer)
_grad_writers: dict = {}  # id(tensor) -> (weakref to it, writer)


def set_grad_writer(tensor: Tensor, writer) -> None:
    """When a backward (without ``create_graph``) produces the gradient of leaf ``tensor``
    while its ``.grad`` is None, call ``writer(array)`` instead of adopting the array: the
    writer stores it (e.g. straight into a communication buffer) and returns the tensor that
    becomes ``.grad``. ``writer=None`` removes it. Hooks run as usual around it."""
    key = id(tensor)
    if writer is None:
        _grad_writers.pop(key, None)
    else:
        _grad_writers[key] = (weakref.ref(tensor, lambda _: _grad_writers.pop(key, None)), writer)


class _GraphTask:
    """State of one backward call."""

    def __init__(self, create_graph: bool, retain_graph: bool = False):
        self.create_graph, self.retain_graph = create_graph, retain_graph
        self.callbacks: list = []
        self.needed = None  # set of nodes that will execute


_local = threading.local()


def _tasks() -> list:
    stack = getattr(_local, "tasks", None)
    if stack is None:
        stack = _local.tasks = []
    return stack


def is_backward_running() -> bool:
    """Whether a backward pass is running in this thread (true inside hooks and callbacks)."""
    return bool(_tasks())


def retains_graph() -> bool:
    """Whether the backward running in this thread keeps saved values (``retain_graph=True``);
    a node whose backward frees its own saved values as it goes (a ``jit`` replay) asks this."""
    tasks = _tasks()
    return bool(tasks) and tasks[-1].retain_graph


def queue_callback(callback) -> None:
    """Run ``callback()`` once the current backward has processed every node (before it
    returns). Only valid while a backward is running, e.g. from a hook."""
    tasks = _tasks()
    if not tasks:
        raise RuntimeError("queue_callback can only be called during a backward pass")
    tasks[-1].callbacks.append(callback)


def will_execute(node) -> bool:
    """Whether ``node`` (a ``grad_fn`` or a leaf's accumulator) runs in the current backward."""
    tasks = _tasks()
    if not tasks:
        raise RuntimeError("will_execute can only be called during a backward pass")
    return node in tasks[-1].needed


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _root_grads(roots, grad_tensors, create_graph):
    if len(grad_tensors) != len(roots):
        raise RuntimeError(f"got {len(grad_tensors)} gradients for {len(roots)} tensors")
    grads = []
    for i, (t, g) in enumerate(zip(roots, grad_tensors)):
        if not t._requires_grad:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn"
            )
        if g is None:
            if t._array.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; "
                    f"output {i} has shape {list(t.shape)}. Pass gradient= "
                    f"(a tensor of that shape) to backward()"
                )
            arr = array_module_for(t._array).ones_like(t._array)
        else:
            arr = g._array if isinstance(g, Tensor) else g
            if tuple(arr.shape) != tuple(t.shape):
                raise RuntimeError(
                    f"Mismatch in shape: grad_output[{i}] has a shape of "
                    f"{list(arr.shape)} and output[{i}] has a shape of "
                    f"{list(t.shape)}."
                )
            if arr.dtype != t._array.dtype:
                raise RuntimeError(
                    f"Mismatch in dtype: grad_output[{i}] has dtype {arr.dtype} "
                    f"and output[{i}] has dtype {t._array.dtype}."
                )
        if create_graph:
            grads.append(g if isinstance(g, Tensor) else Tensor(arr))
        else:
            grads.append(arr)
    return grads


def _discover(root_nodes, targets):
    """Nodes that will run and their dependency counts. With ``targets`` (for ``grad`` and
    ``backward(inputs=...)``) only nodes on a path to a target are kept."""
    if targets is None:  # every reachable node: one pass, counting edges as they are seen
        deps = {}
        visited = set(root_nodes)
        stack = list(visited)
        while stack:
            for edge in stack.pop()._next:
                if edge is not None:
                    child = edge[0]
                    deps[child] = deps.get(child, 0) + 1
                    if child not in visited:
                        visited.add(child)
                        stack.append(child)
        return deps, visited
    order, visited = [], set()
    for root in root_nodes:  # iterative post-order: children before parents
        if root in visited:
            continue
        visited.add(root)
        stack = [(root, iter(root._next))]
        while stack:
            node, children = stack[-1]
            for edge in children:
                if edge is not None and edge[0] not in visited:
                    visited.add(edge[0])
                    stack.append((edge[0], iter(edge[0]._next)))
                    break
            else:
                stack.pop()
                order.append(node)
    needed = set()
    for node in order:
        if node in targets or any(e is not None and e[0] in needed for e in node._next):
            needed.add(node)
    deps = {}
    for node in needed:
        for edge in node._next:
            if edge is not None and edge[0] in needed:
                deps[edge[0]] = deps.get(edge[0], 0) + 1
    return deps, needed


def _accumulate_into(grads_by_slot, nr, g):
    old = grads_by_slot[nr]
    grads_by_slot[nr] = g if old is None else old + g


def _stealable(arr) -> bool:
    """True when nothing else references ``arr``, so ``.grad`` may adopt it without a copy
    (PyTorch steals the gradient the same way). The caller's local variable, this function's
    argument and getrefcount's own argument make three."""
    return arr.flags.owndata and sys.getrefcount(arr) <= 3


def _run_tensor_hooks(hooks, grad, create_graph):
    for hook in list(hooks.values()):
        out = hook(grad if create_graph else Tensor(grad))
        if out is not None:
            grad = out if create_graph else out._array
    return grad


def _accumulate_leaf(node, buffer, task, capture):
    tensor = node.variable_ref()
    if tensor is None:
        return
    create_graph = task.create_graph
    g = buffer[0]
    if tensor._hooks:
        g = _run_tensor_hooks(tensor._hooks, g, create_graph)
    if capture is not None and node in capture:
        capture[node] = g
        return
    if create_graph:
        tensor._grad = g if tensor._grad is None else tensor._grad + g
    elif tensor._grad is None:
        buffer[0] = None
        entry = _grad_writers.get(id(tensor)) if _grad_writers else None
        if entry is not None and entry[0]() is tensor:
            tensor._grad = entry[1](g)
        else:
            tensor._grad = Tensor(g if _stealable(g) else g.copy())
    else:
        grad_array = tensor._grad._array
        if grad_array.shape == g.shape:
            grad_array += g
        else:
            tensor._grad = Tensor(grad_array + g)
        tensor._grad._version.value += 1
    if tensor._post_acc_hooks:
        for hook in list(tensor._post_acc_hooks.values()):
            hook(tensor)


def _pre_hooks(node, grads, create_graph):
    if node._tensor_pre_hooks:
        for nr, hooks in node._tensor_pre_hooks.items():
            if hooks and grads[nr] is not None:
                grads[nr] = _run_tensor_hooks(hooks, grads[nr], create_graph)
    if node._retain_grad:
        for nr, ref in node._retain_grad.items():
            t = ref()
            if t is not None and grads[nr] is not None:
                g = grads[nr]
                if not create_graph:
                    g = Tensor(g.copy())
                t._grad = g if t._grad is None else t._grad + g
    if node._pre_hooks:
        for hook in list(node._pre_hooks.values()):
            out = hook(tuple(grads))
            if out is not None:
                grads[:] = list(out)


def _call_backward(node, grads, create_graph):
    if node._device is not None:
        with node._device:
            return _run_backward(node, grads, create_graph)
    return _run_backward(node, grads, create_graph)


def _run_backward(node, grads, create_graph):
    fn = node._function
    xp = node._xp
    if node._materialize_grads and (len(grads) > 1 or grads[0] is None):
        for nr, g in enumerate(grads):
            if g is None and node._output_meta[nr] is not None:
                shape, dtype = node._output_meta[nr]
                z = xp.zeros(shape, dtype)
                grads[nr] = Tensor(z) if create_graph else z
    if not create_graph:
        return fn.array_backward(node, *grads)
    if fn.once_differentiable:
        arrays = [g._array if isinstance(g, Tensor) else g for g in grads]
        return _wrap_once_differentiable(node, fn.array_backward(node, *arrays), grads)
    node._create_graph, node.xp = True, function._graph_namespace
    try:
        return fn.array_backward(node, *[_as_tensor(g) for g in grads])
    finally:
        node._create_graph, node.xp = False, node._xp


def _as_tensor(g):
    return Tensor(g) if g is not None and not isinstance(g, Tensor) else g


class _OnceDifferentiableResult(Function):
    """Marks the gradients a once-differentiable backward produced under create_graph, so
    that differentiating them raises instead of silently giving zero."""

    @staticmethod
    def forward(ctx, name, n, *values):
        ctx.op_name = name
        return values[:n] if n > 1 else values[0]

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"the backward of {ctx.op_name} is not differentiable twice (it is "
            f"marked once_differentiable); create_graph=True cannot go through "
            f"it"
        )


def _wrap_once_differentiable(node, result, grads):
    """Mark ``result`` so that differentiating it raises; it is connected to the incoming
    ``grads`` (when they require grad), the path a double backward takes."""
    single = not isinstance(result, tuple)
    result = (result,) if single else result
    wrapped = tuple(Tensor(r) if r is not None else None for r in result)
    out = [None] * len(wrapped)
    live = [w for w in wrapped if w is not None]
    if live:
        links = [g for g in grads if isinstance(g, Tensor) and g.requires_grad]
        marked = _OnceDifferentiableResult.apply(node.name(), len(live), *live, *links)
        marked = marked if isinstance(marked, tuple) else (marked,)
        it = iter(marked)
        out = [next(it) if w is not None else None for w in wrapped]
    return out[0] if single else tuple(out)


def _check_grad(node, i, g):
    """``g`` if it fits input ``i`` of ``node`` (a bfloat16 input's float gradient is cast:
    numpy computes some bfloat16 ops in float32); else raise."""
    meta = node._input_meta[i]
    if meta is None:
        return g
    shape, dtype = meta
    if tuple(g.shape) != tuple(shape):
        raise RuntimeError(
            f"Function {node.name()} returned an invalid gradient at index {i} - "
            f"got {list(g.shape)} but expected shape compatible with "
            f"{list(shape)}"
        )
    if g.dtype != dtype and not isinstance(g, Tensor):
        if dtype == _BF16 and is_floating(g.dtype):
            return g.astype(dtype)
        raise RuntimeError(
            f"Function {node.name()} returned an invalid gradient at index {i} - "
            f"expected dtype {dtype} but got {g.dtype}"
        )
    return g


def _check_anomaly(node, grads):
    for i, g in enumerate(grads):
        if g is None:
            continue
        arr = g._array if isinstance(g, Tensor) else g
        xp = array_module_for(arr)
        if arr.dtype.kind in "fc" and not bool(xp.isfinite(arr).all()):
            trace = node._trace or (
                "(forward traceback not recorded: enable detect_anomaly before the forward pass)\n"
            )
            raise RuntimeError(
                f"Function '{node.name()}' returned nan or inf values in its "
                f"{i}th output.\nTraceback of the forward call that caused the "
                f"error:\n{trace}"
            )


def _execute(root_nodes, root_grads, retain_graph, create_graph, capture=None, leaves=()):
    """Run one backward. ``capture`` maps targets (a leaf's accumulator, or a non-leaf's
    ``(node, output_nr)``) to the gradient they receive instead of accumulating it; ``leaves``
    are further accumulators to accumulate into as usual. With either, only nodes on a path to
    one of them run."""
    task = _GraphTask(create_graph, retain_graph)
    targets = None
    if capture is not None or leaves:
        targets = {k[0] if isinstance(k, tuple) else k for k in capture or ()} | set(leaves)
    deps, task.needed = _discover([n for n, _ in root_nodes], targets)
    buffers = {}
    for (node, nr), g in zip(root_nodes, root_grads):
        buf = buffers.get(node)
        if buf is None:
            buf = buffers[node] = [None] * max(len(node._output_meta), 1)
        _accumulate_into(buf, nr, g)
    ready = [(-n._seq, id(n), n) for n in buffers if deps.get(n, 0) == 0 and n in task.needed]
    heapq.heapify(ready)
    skipped = []  # nodes whose inputs need nothing: not run, their saved values freed at the end
    needed = task.needed
    check_nan = _anomaly["enabled"] and _anomaly["check_nan"]
    tasks = _tasks()
    tasks.append(task)
    try:
        with grad_mode.set_grad_enabled(create_graph):
            while ready:
                node = heapq.heappop(ready)[2]
                grads = buffers.pop(node)
                if node._is_accumulator:
                    _accumulate_leaf(node, grads, task, capture)
                    continue
                if node._tensor_pre_hooks or node._retain_grad or node._pre_hooks:
                    _pre_hooks(node, grads, create_graph)
                if capture is not None:
                    for nr, g in enumerate(grads):
                        if (node, nr) in capture:
                            capture[(node, nr)] = g
                    if not any(e is not None and e[0] in needed for e in node._next):
                        skipped.append(node)
                        continue
                elif node._next.count(None) == len(node._next):
                    skipped.append(node)
                    continue
                if node._device is None:
                    result = _run_backward(node, grads, create_graph)
                else:
                    result = _call_backward(node, grads, create_graph)
                del grads
                result = result if isinstance(result, tuple) else (result,)
                if len(result) != len(node._next):
                    raise RuntimeError(
                        f"function {node.name()} returned an incorrect number of "
                        f"gradients (expected {len(node._next)}, got "
                        f"{len(result)})"
                    )
                if node._post_hooks:
                    for hook in list(node._post_hooks.values()):
                        out = hook(result, ())
                        if out is not None:
                            result = tuple(out)
                if check_nan:
                    _check_anomaly(node, result)
                if not retain_graph:
                    node._release()  # free its saved arrays now, as PyTorch (checkpointing)
                for i, (edge, g) in enumerate(zip(node._next, result)):
                    if edge is None or g is None:
                        continue
                    child, nr = edge
                    if child not in needed:
                        continue
                    meta = node._input_meta[i]
                    if meta is not None and (g.shape != meta[0] or g.dtype != meta[1]):
                        g = _check_grad(node, i, g)
                    buf = buffers.get(child)
                    if buf is None:
                        buf = buffers[child] = [None] * max(len(child._output_meta), 1)
                    old = buf[nr]
                    buf[nr] = g if old is None else old + g
                    left = deps[child] - 1
                    deps[child] = left
                    if left == 0:
                        heapq.heappush(ready, (-child._seq, id(child), child))
                del result
            for callback in task.callbacks:
                callback()
    finally:
        tasks.pop()
        if not retain_graph:
            for node in skipped:
                node._release()


def _edges_for_inputs(inputs):
    edges = []
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"inputs[{i}] must be a Tensor, got {type(t).__name__}")
        if not t._requires_grad:
            raise RuntimeError(
                f"One of the differentiated Tensors (inputs[{i}], shape "
                f"{list(t.shape)}) does not require grad"
            )
        edges.append(t._edge())
    return edges


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Compute gradients of ``tensors`` w.r.t. graph leaves and accumulate them in ``.grad``."""
    roots = _as_list(tensors)
    grads = _as_list(grad_tensors) or [None] * len(roots)
    if retain_graph is None:
        retain_graph = create_graph
    root_grads = _root_grads(roots, grads, create_graph)
    root_nodes = [t._edge() for t in roots]
    if inputs is None:
        _execute(root_nodes, root_grads, retain_graph, create_graph)
        return
    # backward(inputs=...): accumulate only into the given tensors. Leaves accumulate inside
    # the backward as usual (their hooks run); non-leaf inputs get their gradient afterwards.
    inputs = _as_list(inputs)
    edges = _edges_for_inputs(inputs)
    leaves = [e[0] for e in edges if e[0]._is_accumulator]
    capture = {e: None for e in edges if not e[0]._is_accumulator}
    _execute(root_nodes, root_grads, retain_graph, create_graph, capture, leaves)
    for t, e in zip(inputs, edges):
        g = capture.get(e)
        if g is None:
            continue
        g = g if create_graph else Tensor(g.copy())
        t._grad = g if t._grad is None else t._grad + g


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    allow_unused=None,
    materialize_grads=False,
):
    """Return the gradients of ``outputs`` w.r.t. ``inputs`` (without touching ``.grad``)."""
    roots = _as_list(outputs)
    inputs_list = _as_list(inputs)
    grads = _as_list(grad_outputs) or [None] * len(roots)
    if retain_graph is None:
        retain_graph = create_graph
    if allow_unused is None:
        allow_unused = materialize_grads
    root_grads = _root_grads(roots, grads, create_graph)
    root_nodes = [t._edge() for t in roots]
    edges = _edges_for_inputs(inputs_list)
    keys = [e[0] if e[0]._is_accumulator else e for e in edges]
    capture = {k: None for k in keys}
    _execute(root_nodes, root_grads, retain_graph, create_graph, capture)
    result = []
    for i, (t, k) in enumerate(zip(inputs_list, keys)):
        g = capture[k]
        if g is None:
            if materialize_grads:
                result.append(Tensor(array_module_for(t._array).zeros_like(t._array)))
                continue
            if not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (inputs[{i}], shape "
                    f"{list(t.shape)}) appears to not have been used in the "
                    f"graph. Set allow_unused=True if this is the desired "
                    f"behavior."
                )
            result.append(None)
        else:
            result.append(g if isinstance(g, Tensor) else Tensor(g))
    return tuple(result)
