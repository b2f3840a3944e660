"""``trace_step``: capture a whole training step — forward, loss, backward, optimizer update —
for replay.

On CPU a step is the traced forward+loss replay (one autograd node), its replayed backward
(which fills ``.grad`` through the engine, so gradient hooks still run) and ``optimizer.step()``
(which already works on raw arrays). With ``cuda_graph=True`` (cupy tensors) the step is
captured once into a CUDA graph and each call copies the new inputs into static buffers and
launches the graph: no Python runs per step at all. The CUDA-graph path is untested in this
repository's CI (no GPU): see ``_CudaGraphStep`` for its constraints.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..backend import cupy_or_none
from .tracer import TraceError, _as_inputs, trace

__all__ = ["trace_step", "TracedStep"]


def trace_step(
    loss_fn,
    example_inputs,
    optimizer,
    *,
    zero_grad: bool = True,
    check_trace: bool = True,
    cuda_graph: bool = False,
    warmup: int = 3,
) -> TracedStep:
    """Capture the training step ``optimizer.zero_grad(); loss = loss_fn(*inputs);
    loss.backward(); optimizer.step()`` for replay; returns ``step`` with ``step(*inputs)``
    running it and returning the (detached) loss.

    ``loss_fn`` returns the scalar loss, or a tuple whose first item is the loss (the rest,
    e.g. logits, are returned too). Tracing runs ``loss_fn`` eagerly without updating the
    parameters; ``check_trace`` as in ``trace``. ``cuda_graph=True`` (cupy inputs, an SGD
    optimizer, no dropout) replays the step as one CUDA graph; it first runs ``warmup`` real
    steps on ``example_inputs``, as CUDA graph capture requires (kernels compiled, optimizer
    state allocated)."""
    return TracedStep(
        loss_fn,
        example_inputs,
        optimizer,
        zero_grad=zero_grad,
        check_trace=check_trace,
        cuda_graph=cuda_graph,
        warmup=warmup,
    )


class TracedStep:
    """A captured training step; call it with inputs of the traced shapes."""

    def __init__(
        self,
        loss_fn,
        example_inputs,
        optimizer,
        *,
        zero_grad=True,
        check_trace=True,
        cuda_graph=False,
        warmup=3,
    ):
        inputs = _as_inputs(example_inputs)
        self.forward = trace(loss_fn, inputs, check_trace=check_trace)
        self.optimizer, self.zero_grad = optimizer, zero_grad
        self._cuda = _CudaGraphStep(self, inputs, warmup) if cuda_graph else None

    def run(self, *inputs):
        """One step driven from Python: the traced forward and backward replays, then the
        optimizer (what ``__call__`` does on CPU, and what a CUDA graph captures)."""
        if self.zero_grad:
            self.optimizer.zero_grad()
        out = self.forward(*inputs)
        loss = out[0] if isinstance(out, (tuple, list)) else out
        loss.backward()
        self.optimizer.step()
        if isinstance(out, (tuple, list)):
            return type(out)(o.detach() for o in out)
        return out.detach()

    def __call__(self, *inputs):
        if self._cuda is not None:
            return self._cuda(inputs)
        return self.run(*inputs)


class _CudaGraphStep:
    """The step captured as a CUDA graph (UNTESTED: no GPU where this was written).

    Inputs are copied into static device buffers, the graph is launched on a private stream
    ordered after the caller's stream, and the returned loss is a static tensor overwritten by
    the next call (as ``torch.cuda.graphs``). Memory allocated during capture comes from a
    private cupy memory pool kept alive with the graph, so no other allocation can reuse it.
    Constraints: everything in the step must be device work after warm-up — dropout masks are
    drawn on the host (refused), and only SGD is accepted (Adam's bias corrections are
    computed on the host from its step count, which a graph would freeze); the learning rate
    and other hyperparameters are frozen at capture; ``.grad`` tensors must not be replaced
    between calls (``zero_grad`` runs at capture time only, a set-to-None semantics the graph
    keeps by rewriting the same gradient buffers).
    """

    def __init__(self, step: TracedStep, inputs, warmup: int):
        from ..optim import SGD

        cp = cupy_or_none()
        if cp is None:
            raise RuntimeError("trace_step(cuda_graph=True) needs cupy and a CUDA device")
        if any(isinstance(t.array, np.ndarray) for t in inputs):
            raise TraceError("trace_step(cuda_graph=True) needs CUDA tensors as inputs")
        if step.forward.graph.has_random:
            raise TraceError(
                "trace_step(cuda_graph=True) cannot replay dropout: its masks are "
                "drawn on the host; use cuda_graph=False or eval mode"
            )
        if type(step.optimizer) is not SGD:
            raise TraceError(
                f"trace_step(cuda_graph=True) supports SGD only; "
                f"{type(step.optimizer).__name__} computes part of its update on "
                f"the host, which a CUDA graph would freeze"
            )
        self.cp, self.step = cp, step
        self.static = [Tensor(t.array.copy(), requires_grad=t.requires_grad) for t in inputs]
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.stream.wait_event(cp.cuda.get_current_stream().record())
        with self.stream:
            for _ in range(warmup):
                step.run(*self.static)
            self.stream.synchronize()
            self.pool = cp.cuda.MemoryPool()
            with cp.cuda.using_allocator(self.pool.malloc):
                self.stream.begin_capture()
                try:
                    self.out = step.run(*self.static)
                finally:
                    self.graph = self.stream.end_capture()

    def __call__(self, inputs):
        self.step.forward.check_inputs(inputs)
        cp = self.cp
        caller = cp.cuda.get_current_stream()
        self.stream.wait_event(caller.record())
        with self.stream:
            for buffer, t in zip(self.static, inputs):
                buffer.write_array_(t.array)
            self.graph.launch(self.stream)
        caller.wait_event(self.stream.record())
        return self.out
