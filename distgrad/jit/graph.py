"""The static graph a trace records, and its replay on raw arrays.

A ``Graph`` is a flat list of ``Step`` records over numbered value slots: the traced function's
inputs, the "external" tensors it read (module parameters and buffers, read live at each
call), constants, and each op's outputs. Replaying it calls every op's ``array_forward(ctx,
*arrays)`` on the slots' arrays with ctx objects allocated once and reused, then (for
gradients) every recorded op's ``backward`` in reverse order — no Tensor, graph node or engine
work per op. One replay is one autograd node, ``TracedGraphBackward``, so ``loss.backward()``
after a replay accumulates into the parameters' ``.grad`` through the ordinary engine (hooks,
DataParallel and all).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

from ..autograd import BackwardNode, Op
from ..autograd.engine import retains_graph

__all__ = ["Graph", "Step", "TracedGraph", "RandomArray", "InputView"]

_SCALARS = (np.generic, int, float, complex)
# Outputs smaller than this are allocated as in eager: small arrays come from malloc's bins
# without page faults, and the arena's bookkeeping would cost more than it saves.
PLAN_BYTES = 64 << 10


class RandomArray:
    """A setup step that draws a fresh random array per replay (a dropout mask), from the same
    stream and in the same order as the eager run would."""

    random = True

    def __init__(self, draw, args):
        self.draw, self.args = draw, args

    def __call__(self, vals):
        return self.draw(*self.args)


class InputView:
    """A setup step for an array that wrappers computed outside autograd as a reshape/cast of
    an input (class indices), recomputed from that input per replay."""

    random = False

    def __init__(self, slot, shape, dtype):
        self.slot, self.shape, self.dtype = slot, shape, dtype

    def __call__(self, vals):
        return vals[self.slot].reshape(self.shape).astype(self.dtype, copy=False)


class Step:
    """One recorded op call: ``outs = fn.array_forward(ctx, *slots[args])``.

    ``needs`` is the call's ``needs_input_grad`` (empty when it recorded no graph: then it has
    no backward); ``grad_edges`` the (argument position, slot, dtype) of the arguments that
    receive gradients (``in_dtypes``: each argument's dtype, None for non-tensors);
    ``setup`` the (slot, make) pairs computed right before the op (``make(slots)``: a fresh
    dropout mask, a reshaped input); ``tensor_args`` which arguments were tensors (the ctx
    is told: a user Function's adapter wraps those); ``out_meta`` the outputs' (shape, dtype), for zero gradients.
    """

    __slots__ = (
        "fn",
        "args",
        "outs",
        "needs",
        "grad_edges",
        "setup",
        "tensor_args",
        "out_meta",
        "single",
        "planned",
        "work",
    )

    def __init__(self, fn, args, outs, needs, setup, tensor_args, out_meta, single, in_dtypes):
        self.fn, self.args, self.outs, self.needs = fn, tuple(args), tuple(outs), tuple(needs)
        self.grad_edges = tuple(
            (i, s, in_dtypes[i])
            for i, s in enumerate(self.args)
            if i < len(self.needs) and self.needs[i]
        )
        self.setup, self.tensor_args = tuple(setup), tuple(tensor_args)
        self.out_meta, self.single = tuple(out_meta), single
        self.planned = False  # set by Graph: the output goes into a reused buffer
        self.work = False  # set by Graph: forward gets a reused scratch array (work_buffer)

    @property
    def recorded(self) -> bool:
        return bool(self.needs) and any(self.needs)


class Graph:
    """Steps over ``n_slots`` value slots. ``arg_slots``: the slots filled per call (inputs, then
    externals); ``constants``: slot -> value, filled once; ``outputs``: the returned slots,
    of which ``diff_outputs`` carry gradients and ``plain_outputs`` do not; ``externals``: the
    tensors read live at each call (``external_names`` names them where known)."""

    def __init__(
        self,
        ops,
        n_slots,
        n_inputs,
        externals,
        constants,
        outputs,
        diff_outputs,
        xp,
        external_names=None,
    ):
        self.ops = list(ops)
        self.n_slots, self.n_inputs, self.xp = n_slots, n_inputs, xp
        self.externals = [t for _, t in externals]
        self.external_names = external_names or {}
        self.arg_slots = tuple(range(n_inputs)) + tuple(s for s, _ in externals)
        self.outputs = tuple(outputs)
        self.diff_outputs = tuple(diff_outputs)
        self.plain_outputs = tuple(s for s in outputs if s not in set(diff_outputs))
        self.constant_slots = frozenset(constants)
        self._template = [None] * n_slots
        for slot, value in constants.items():
            self._template[slot] = value
        self._backward_ops = [
            (i, op) for i, op in reversed(list(enumerate(self.ops))) if op.recorded
        ]
        self._dead_after = _dead_after(self.ops, self.outputs, self.constant_slots)
        returned = set(self.outputs)
        for op in self.ops:
            op.planned = (
                op.single
                and getattr(op.fn, "writes_out_buffer", False)
                and op.outs[0] not in returned
                and op.out_meta[0] is not None
                and _nbytes(*op.out_meta[0]) >= PLAN_BYTES
            )
            op.work = getattr(op.fn, "writes_work_buffer", False) if op.args else False
        self._grad_planned = frozenset(
            index
            for index, op in self._backward_ops
            if getattr(op.fn, "writes_grad_buffer", False) and op.grad_edges
        )
        self._arena = _Arena()
        self._grad_meta: dict = {}  # step index -> (shape, dtype) of its first input gradient
        self._pool = []

    @property
    def buffer_planning(self) -> bool:
        """Whether replays write planned outputs and gradients into reused arrays (on by
        default; off, every op allocates as in eager: for measuring what planning buys)."""
        return self._arena.enabled

    @buffer_planning.setter
    def buffer_planning(self, on: bool) -> None:
        self._arena.enabled = bool(on)

    @property
    def has_backward(self) -> bool:
        """Whether the graph was captured with a backward pass."""
        return bool(self._backward_ops)

    @property
    def has_random(self) -> bool:
        """Whether the graph draws random numbers (dropout, ...), replayed from the live generator."""
        return any(make.random for op in self.ops for _, make in op.setup)

    # ---- ctx objects, allocated once and reused ------------------------------------------
    def take_ctxs(self) -> list:
        """Hand over the recorded backward contexts of the last replay (each once)."""
        if self._pool:
            return self._pool.pop()
        ctxs = []
        for op in self.ops:
            ctx = op.fn._backward_cls()
            ctx._xp = ctx.xp = self.xp
            ctx.needs_input_grad = op.needs
            ctx.tensor_args = op.tensor_args
            ctxs.append(ctx)
        return ctxs

    def give_back(self, ctxs: list) -> None:
        """Drop everything one replay left on its ctx objects (saved arrays, intermediates
        that ops keep as ctx attributes: as much memory as the activations) and keep the
        objects for the next replay. Holding them until the next replay overwrote them made
        a step's peak memory twice eager's, and the replay slower than eager."""
        for ctx in ctxs:
            _clear(ctx)
        if not self._pool:
            self._pool.append(ctxs)

    # ---- replay ------------------------------------------------------------------------
    def run_forward(self, ctxs: list, arrays) -> list:
        """Every op's forward on arrays; returns the filled slots.

        Buffer planning: an op that declares ``writes_out_buffer`` finds in ``ctx.out_buffer``
        an array of its output's shape and dtype that nothing references any more (an output
        of an earlier op or replay, now dead: ``_Arena``) and writes its output into it, so a
        replayed step allocates (and page-faults) nothing for those outputs and reuses
        cache-warm memory. Returned values never use one."""
        vals = self._template.copy()
        for slot, array in zip(self.arg_slots, arrays):
            vals[slot] = array
        arena = self._arena
        for op, ctx, dead in zip(self.ops, ctxs, self._dead_after):
            for slot, make in op.setup:
                vals[slot] = make(vals)
            args = [vals[i] for i in op.args]
            if op.work:
                if op.work is not True:  # a predicate of the arguments: asked once per graph
                    op.work = bool(op.work(*args))
                if op.work:
                    ctx.work_buffer = arena.scratch(self.xp, args[0])
            if op.planned:
                ctx.out_buffer = arena.take(op.out_meta[0])
                given = ctx.out_buffer is not None
                out = op.fn.array_forward(ctx, *args)
                ctx.out_buffer = None  # a reference that would keep the buffer busy
                if isinstance(out, _SCALARS):
                    out = _array_output(ctx, out)
                elif not given:
                    arena.adopt(out, args)
                vals[op.outs[0]] = out
            elif op.single:
                out = op.fn.array_forward(ctx, *args)
                vals[op.outs[0]] = _array_output(ctx, out) if isinstance(out, _SCALARS) else out
            else:
                out = op.fn.array_forward(ctx, *args)
                for slot, o in zip(op.outs, out):
                    if slot is not None:
                        vals[slot] = _array_output(ctx, o) if isinstance(o, _SCALARS) else o
            if op.work:
                ctx.work_buffer = None  # the op keeps it (saved) if its backward reads it
            for slot in dead:  # as eager: an intermediate nothing reads again is freed now
                vals[slot] = None
        arena.release([vals[s] for s in self.outputs])  # the caller keeps those
        return vals

    def run_backward(self, ctxs: list, out_grads, release: bool = False) -> tuple:
        """Every recorded op's backward, newest first (the engine's order, so gradients are
        summed in the same order as eager); returns the gradients of the argument slots.
        ``release``: free each op's saved values right after its backward, as the engine
        does without ``retain_graph``."""
        grads = [None] * self.n_slots
        planned, arena, meta = self._grad_planned, self._arena, self._grad_meta
        for slot, g in zip(self.diff_outputs, out_grads):
            if g is not None:
                grads[slot] = g if grads[slot] is None else grads[slot] + g
        for index, op in self._backward_ops:
            ctx = ctxs[index]
            if op.single:
                gs = [grads[op.outs[0]]]
                if gs[0] is None:
                    continue
                grads[op.outs[0]] = None
            else:
                gs = [None if s is None else grads[s] for s in op.outs]
                if all(g is None for g in gs):
                    continue
                for s in op.outs:
                    if s is not None:
                        grads[s] = None
                if ctx._materialize_grads:
                    for nr, g in enumerate(gs):
                        if g is None and op.out_meta[nr] is not None:
                            gs[nr] = self.xp.zeros(*op.out_meta[nr])
            known = meta.get(index) if index in planned else False
            if known is not False:  # None: not seen yet
                ctx.grad_buffer = None if known is None else arena.take(known)
                given = ctx.grad_buffer is not None
                result = op.fn.array_backward(ctx, *gs)
                ctx.grad_buffer = None
                first = result[0] if isinstance(result, tuple) else result
                if not given and first is not None:
                    big = getattr(first, "nbytes", 0) >= PLAN_BYTES
                    meta[index] = (first.shape, first.dtype) if big else False
                    if big:
                        arena.adopt(first, gs)
                first = None
            else:
                result = op.fn.array_backward(ctx, *gs)
            if release:
                _clear(ctx)
            if not isinstance(result, tuple):
                result = (result,)
            for i, slot, dtype in op.grad_edges:
                g = result[i]
                if g is None:
                    continue
                if g.dtype is not dtype and g.dtype != dtype:  # bfloat16 input, as the engine
                    g = g.astype(dtype)
                grads[slot] = g if grads[slot] is None else arena.add(self.xp, grads[slot], g)
        grads = [grads[s] for s in self.arg_slots]
        return tuple(arena.copies(grads))  # they leave the replay (into .grad): not buffers

    # ---- description ---------------------------------------------------------------------
    def __len__(self):
        return len(self.ops)

    def __str__(self):
        def name(slot):
            return self.external_names.get(slot, f"%{slot}")

        const = self.constant_slots
        head = ", ".join(name(s) for s in self.arg_slots)
        lines = [f"graph({head}):"]
        for op in self.ops:
            args = ", ".join("const" if s in const else name(s) for s in op.args)
            outs = ", ".join("_" if s is None else f"%{s}" for s in op.outs)
            lines.append(f"  {outs} = {op.fn.__name__}({args})")
        lines.append(f"  return ({', '.join(name(s) for s in self.outputs)})")
        return "\n".join(lines)


def _nbytes(shape, dtype) -> int:
    size = np.dtype(dtype).itemsize
    for n in shape:
        size *= n
    return size


def _root(a):
    """The array owning ``a``'s memory (numpy and cupy point a view's ``base`` at it)."""
    base = getattr(a, "base", None)
    return a if base is None else base


def _unreferenced_count() -> int:
    """What ``sys.getrefcount`` says, in ``_Arena.take``'s loop, of an array that nothing but
    the arena's list references (3 on CPython: the list, the loop variable, the argument;
    measured, as interpreters differ in the references they count)."""
    for a in [np.empty(1)]:
        return sys.getrefcount(a)
    return 0


_FREE_REFS = _unreferenced_count()


class _Arena:
    """The arrays planned ops wrote their outputs and input gradients into, by (size, dtype)
    of the owning array. Liveness is the reference count: an array is handed out again only
    when nothing but the arena references it (not a live slot, a saved value, a view, a
    gradient, nor anything a caller kept), so reuse never overwrites a value in use, whatever
    the replays in flight (``retain_graph``, several outputs held). Arrays that leave the
    replay (returned values, gradients) are dropped or copied so the arena does not grow
    with what callers keep."""

    def __init__(self):
        self.arrays: dict = {}  # (size, dtype) -> [owning arrays]
        self.ids: set = set()
        self.lock = threading.Lock()  # replays of one graph in several threads
        self.enabled = True

    def take(self, meta):
        """A free array viewed as ``meta`` = (shape, dtype), or None."""
        if not self.enabled:
            return None
        shape, dtype = meta
        size = 1
        for n in shape:
            size *= n
        with self.lock:  # the view made here holds the array before another thread looks
            for a in self.arrays.get((size, dtype), ()):
                if sys.getrefcount(a) <= _FREE_REFS:
                    return a.reshape(shape)
        return None

    def adopt(self, out, args) -> None:
        """Keep the memory of ``out`` (a fresh output, or a view covering all of one) for
        later replays, unless a free array of its size is kept already (so the arena holds
        no more than the most arrays live at once); anything that may be shared (part of an
        array, an argument or a view of one, a scalar) is not kept."""
        root = _root(out)
        if (
            self.enabled
            and getattr(out, "ndim", 0) > 0
            and root.size == out.size
            and isinstance(root, type(out))
            and root.flags.c_contiguous
            and id(root) not in self.ids
            and all(root is not a and root is not _root(a) for a in args if a is not None)
        ):
            with self.lock:
                same = self.arrays.setdefault((root.size, root.dtype), [])
                for a in same:  # a free one already (the first replay's gradients)
                    if sys.getrefcount(a) <= _FREE_REFS:
                        return
                same.append(root)
                self.ids.add(id(root))

    def scratch(self, xp, like):
        """A free array of ``like``'s shape and dtype for an op's scratch values (a new one,
        kept, when none is free), or None: planning off, ``like`` small or not an array."""
        if not self.enabled or getattr(like, "nbytes", 0) < PLAN_BYTES:
            return None
        meta = (like.shape, like.dtype)
        out = self.take(meta)
        if out is None:
            out = xp.empty(*meta)
            self.adopt(out, ())
        return out

    def add(self, xp, a, b):
        """``a + b`` (two gradients of one slot), into a free array when there is one."""
        if getattr(a, "nbytes", 0) < PLAN_BYTES or getattr(b, "shape", None) != a.shape:
            return a + b
        out = self.take((a.shape, a.dtype)) if a.dtype == b.dtype else None
        if out is None:
            total = a + b
            self.adopt(total, (a, b))
            return total
        return xp.add(a, b, out=out)

    def release(self, values) -> None:
        """Forget the arrays ``values`` (returned to the caller) are or view."""
        for v in values:
            root = _root(v)
            with self.lock:
                if id(root) in self.ids:
                    self.ids.discard(id(root))
                    self.arrays[(root.size, root.dtype)].remove(root)

    def copies(self, values) -> list:
        """``values``, with a copy for each one that is (a view of) an arena array."""
        ids = self.ids
        return [v if v is None or id(_root(v)) not in ids else v.copy() for v in values]


def _clear(ctx) -> None:
    """Drop what a replay left on a ctx (saved arrays, intermediates ops keep as attributes),
    keeping what the graph set once."""
    fixed = (ctx._xp, ctx.needs_input_grad, ctx.tensor_args)
    ctx.__dict__.clear()
    ctx._xp = ctx.xp = fixed[0]
    ctx.needs_input_grad, ctx.tensor_args = fixed[1], fixed[2]


def _dead_after(ops, outputs, constants) -> list:
    """Per step, the slots that no later step (nor a setup step) reads and that are not
    returned: the replay drops them right after that step, so a forward's peak memory is
    eager's (what backward needs, ops keep on their ctx)."""
    last_use: dict = {}
    for index, op in enumerate(ops):
        for slot in op.args:
            last_use[slot] = index
        for slot, make in op.setup:
            last_use[slot] = index
            read = getattr(make, "slot", None)  # an InputView reads another slot
            if read is not None:
                last_use[read] = index
        for slot in op.outs:
            if slot is not None:
                last_use.setdefault(slot, index)
    keep = set(outputs) | set(constants)
    dead: list = [[] for _ in ops]
    for slot, index in last_use.items():
        if slot not in keep:
            dead[index].append(slot)
    return [tuple(d) for d in dead]


def _array_output(ctx, value):
    """numpy ufuncs give scalars for 0-d results: make them arrays (and what forward saved)."""
    array = np.asarray(value)
    ctx._to_save = tuple(array if v is value else v for v in ctx._to_save)
    return array


class _ReplayNode(BackwardNode):
    """The node of one replay: the engine frees a node's saved values after its backward
    (without retain_graph), which here hands the replay's ctx objects back to the graph for
    the next call."""

    graph: Any = None
    ctxs: Any = None

    def _release(self) -> None:
        ctxs = getattr(self, "ctxs", None)
        if ctxs is not None:
            self.ctxs = None
            self.graph.give_back(ctxs)
            self._freed = True


class TracedGraph(Op):
    """One replay of a ``Graph`` as a single autograd node. ``apply(graph, plain, *tensors)``:
    the inputs then the externals; returns the differentiable outputs and appends the others
    (integer results, values that needed no gradient) to the list ``plain``."""

    once_differentiable = True
    _node_base = _ReplayNode

    @staticmethod
    def forward(ctx, graph, plain, *arrays):
        ctxs = graph.take_ctxs()
        vals = graph.run_forward(ctxs, arrays)
        plain.extend(vals[s] for s in graph.plain_outputs)
        ctx.graph = graph
        if ctx.needs_input_grad and graph.has_backward:
            ctx.ctxs = ctxs
        else:
            ctx.ctxs = None
            graph.give_back(ctxs)
        return tuple(vals[s] for s in graph.diff_outputs)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.ctxs is None:
            raise RuntimeError(
                "Trying to backward through a traced graph a second time: its saved values are "
                "freed after the first backward. Specify retain_graph=True on the first "
                "backward to go through it again."
            )
        return (None, None) + ctx.graph.run_backward(ctx.ctxs, grads, not retains_graph())
