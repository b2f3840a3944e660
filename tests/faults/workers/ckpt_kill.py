"""Scenario 7 worker: SIGKILL in the middle of a checkpoint save.

    ckpt_kill.py ROOT REFS PHASE

Saves checkpoints at steps 1 and 2 into ROOT (keep=2), then asks distgrad.checkpoint to
SIGKILL this process at PHASE of the save of step 3 (``DISTGRAD_CHECKPOINT_TEST_KILL_AT``).
Before each save the parameters are written to REFS/step-<n>.safetensors, so the test can
check which checkpoint survived, bit for bit."""

import os
import sys

from common import mark_fault

import distgrad as dg
from distgrad import checkpoint, nn, optim

root, refs, phase = sys.argv[1:4]
dg.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4))
opt = optim.Adam(model.parameters(), lr=0.1)
for step in (1, 2, 3):
    model(dg.randn(4, 64)).pow(2).sum().backward()
    opt.step()
    opt.zero_grad()
    dg.save(
        {n: p.detach().clone() for n, p in model.named_parameters()},
        os.path.join(refs, f"step-{step}.safetensors"),
    )
    if step == 3:
        os.environ[checkpoint.KILL_ENV] = phase
        mark_fault(phase)
    checkpoint.save(root, model=model, optimizer=opt, step=step, keep=2)
print(f"save of step 3 finished: phase {phase!r} was never reached", flush=True)
