"""Scenario 8: inf/NaN gradients on one rank only. DataParallel.step must skip on every rank
alike (parameters and optimizer state untouched) and stop after max_consecutive_skips."""

import numpy as np
from common import Net, assert_replicas_equal, batch, emit, flat_params, mark_fault

import distgrad
import distgrad.distributed as dist
import distgrad.optim as optim


def snapshot(opt) -> list:
    """Copies of every value of the optimizer's state."""
    return [
        np.array(v.numpy() if isinstance(v, distgrad.Tensor) else v, copy=True)
        for s in opt.state.values()
        for v in s.values()
    ]


dist.init()
rank = dist.rank()
distgrad.manual_seed(0)
model = dist.DataParallel(Net(), nonfinite="skip", max_consecutive_skips=2)
opt = optim.Adam(model.parameters(), lr=0.01)
# step -> (rank, fault): "nan_loss" poisons the loss (NaN reaches every rank through the
# allreduce); "local_inf" writes inf into this rank's gradient after the reduction, so only
# this rank sees it and the flag's allreduce is what makes the others skip.
PLAN = {
    1: (1, "nan_loss"),
    3: (0, "local_inf"),
    4: (1, "nan_loss"),
    5: (1, "local_inf"),
    6: (0, "nan_loss"),
}
for step in range(8):
    target, fault = PLAN.get(step, (None, None))
    loss = model(batch(step, rank)).square().mean()
    if rank == target and fault == "nan_loss":
        mark_fault(f"step{step}")
        loss = loss * float("nan")
    loss.backward()
    if rank == target and fault == "local_inf":
        mark_fault(f"step{step}")
        model.module.head.weight.grad._array[0, 0] = np.inf
    before, state = flat_params(model), snapshot(opt)
    try:
        stepped = model.step(opt)
    except dist.NonFiniteGradientError as e:
        emit(step=step, stopped=True, message=str(e), skipped=model.skipped_steps)
        break
    opt.zero_grad()
    after = snapshot(opt)
    untouched = (
        np.array_equal(before, flat_params(model))
        and len(state) == len(after)
        and all(np.array_equal(a, b) for a, b in zip(state, after))
    )
    emit(step=step, stepped=stepped, untouched=untouched)
    assert_replicas_equal(model, f"step {step}")
emit(finished=True)
