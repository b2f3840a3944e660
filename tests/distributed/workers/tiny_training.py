"""A tiny float64 regression trained data-parallel, and the same training in one process
(the torchrun-style and mp.spawn-style scripts compare the two)."""

import numpy as np

import distgrad
import distgrad.distributed as dist
from distgrad import nn, optim

STEPS, BATCH = 5, 12


def data(step: int):
    rng = np.random.default_rng(step)
    x = rng.standard_normal((BATCH, 4))
    return distgrad.tensor(x), distgrad.tensor(x @ np.arange(1.0, 5.0)[:, None] + 0.5)


def model():
    distgrad.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def train(rank: int, world: int):
    """Each rank takes rows rank::world of every batch; returns (losses, parameters)."""
    net = model()
    ddp = dist.DataParallel(net)
    opt = optim.SGD(ddp.parameters(), lr=0.05)
    losses = []
    for step in range(STEPS):
        x, y = data(step)
        loss = ((ddp(x[rank::world]) - y[rank::world]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, np.concatenate([p.detach().numpy().ravel() for p in net.parameters()])


def reference():
    net = model()
    opt = optim.SGD(net.parameters(), lr=0.05)
    for step in range(STEPS):
        x, y = data(step)
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.concatenate([p.detach().numpy().ravel() for p in net.parameters()])


def check(rank: int, world: int, losses, params) -> None:
    """Every rank holds the single-process parameters (to 1e-12) and the loss went down."""
    assert losses[-1] < losses[0], losses
    np.testing.assert_allclose(params, reference(), rtol=1e-12, atol=1e-12)
    print(f"rank {rank} of {world}: trained, loss {losses[0]:.4f} -> {losses[-1]:.4f}", flush=True)
