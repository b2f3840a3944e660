"""Train a model eagerly and its deep copy through ``jit.trace_step`` side by side."""

from __future__ import annotations

import copy

import distgrad.nn.functional as F
from distgrad import jit


def train_side_by_side(
    model, batches, make_opt, loss_fn=F.cross_entropy, stateful=False, after_replay=None
):
    """Step ``model`` eagerly on each ``(x, y)`` of ``batches`` and a deep copy of it through
    ``jit.trace_step`` (traced on the first batch), asserting that every replayed loss equals
    eager's bit for bit. ``stateful``: the model's forward moves state (batch norm statistics),
    as tracing's one forward did on the copy, so ``model`` runs that forward too.
    ``after_replay(n, step)`` runs after the n-th replay. Returns ``(twin, step)``."""
    twin = copy.deepcopy(model)
    opt, twin_opt = make_opt(model.parameters()), make_opt(twin.parameters())
    step = jit.trace_step(lambda x, y: loss_fn(twin(x), y), batches[0], twin_opt)
    if stateful:
        model(batches[0][0])
    for n, (x, y) in enumerate(batches):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        assert step(x, y).item() == loss.item()
        if after_replay is not None:
            after_replay(n, step)
    return twin, step
