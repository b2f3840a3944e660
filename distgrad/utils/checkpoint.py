"""Activation checkpointing: trade compute for memory.

``checkpoint(fn, *args)`` runs ``fn`` without recording a graph and keeps only its inputs;
the backward runs ``fn`` again with gradients enabled (and the RNG state of the forward, so
dropout draws the same mask) and backpropagates through that recomputation. This is
PyTorch's reentrant variant (``use_reentrant=True``): the recomputation's own backward
accumulates the gradients of the parameters ``fn`` uses into their ``.grad``, so use
``loss.backward()`` — ``autograd.grad`` with respect to those parameters does not see them —
and at least one input must require grad for anything to be recorded.
"""

from __future__ import annotations

import warnings

from ..autograd import Function, Tensor, enable_grad, is_grad_enabled
from ..autograd import backward as _backward
from ..backend import random as _random

__all__ = ["checkpoint", "checkpoint_sequential"]


class Checkpoint(Function):
    """``fn(*args)`` under no_grad in forward, recomputed with gradients in backward."""

    @staticmethod
    def forward(ctx, fn, preserve_rng_state, *args):
        ctx.fn = fn
        ctx.rng_state = _random.get_rng_state() if preserve_rng_state else None
        ctx.args = [None if isinstance(a, Tensor) else a for a in args]
        ctx.save_for_backward(*(a for a in args if isinstance(a, Tensor)))
        return fn(*args)

    @staticmethod
    def backward(ctx, *grads):
        create_graph = is_grad_enabled()  # the engine enables grad for create_graph=True
        args = list(ctx.args)
        saved = iter(ctx.saved_tensors)
        for i, a in enumerate(ctx.args):
            if a is None:
                args[i] = next(saved).detach().requires_grad_(ctx.needs_input_grad[i + 2])
        outer_state = _random.get_rng_state()
        if ctx.rng_state is not None:
            _random.set_rng_state(ctx.rng_state)
        try:
            with enable_grad():
                outputs = ctx.fn(*args)
        finally:
            _random.set_rng_state(outer_state)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        pairs = [
            (o, g)
            for o, g in zip(outputs, grads)
            if isinstance(o, Tensor) and o.requires_grad and g is not None
        ]
        if pairs:
            _backward([o for o, _ in pairs], [g for _, g in pairs], create_graph=create_graph)
        return (None, None) + tuple(a.grad if t is None else None for a, t in zip(args, ctx.args))


def checkpoint(function, *args, preserve_rng_state: bool = True, use_reentrant: bool = True):
    """``function(*args)``, storing only ``args`` for backward and recomputing the rest then.
    ``preserve_rng_state`` restores the random state of the forward for the recomputation
    (same dropout masks). ``function`` returns a tensor or a tuple of tensors."""
    if not use_reentrant:
        raise NotImplementedError(
            "distgrad implements the reentrant checkpoint only (use_reentrant=True)"
        )
    if is_grad_enabled() and not any(isinstance(a, Tensor) and a.requires_grad for a in args):
        warnings.warn(
            "None of the inputs have requires_grad=True. Gradients will be None", stacklevel=2
        )
    return Checkpoint.apply(function, preserve_rng_state, *args)


def checkpoint_sequential(
    functions, segments: int, input, preserve_rng_state: bool = True, use_reentrant: bool = True
):
    """Run the modules/functions ``functions`` (a Sequential or a list) one after the other,
    in ``segments`` chunks: every chunk but the last is checkpointed."""
    functions = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if not 0 < segments <= max(len(functions), 1):
        raise ValueError(
            f"checkpoint_sequential: segments must be between 1 and the number of "
            f"functions ({len(functions)}), got {segments}"
        )
    size = -(-len(functions) // segments)

    def run(chunk):
        def forward(x):
            for f in chunk:
                x = f(x)
            return x

        return forward

    chunks = [functions[i : i + size] for i in range(0, len(functions), size)]
    for chunk in chunks[:-1]:
        input = checkpoint(
            run(chunk), input, preserve_rng_state=preserve_rng_state, use_reentrant=use_reentrant
        )
    return run(chunks[-1])(input)
