"""What several benchmarks share: the MLP 784-1024-1024-10, its hand-written numpy
forward/backward, distgrad's SGD training step, and starting a script under mpiexec."""

from __future__ import annotations

import os
import subprocess
import sys

MLP_SIZES = (784, 1024, 1024, 10)
LR = 0.01


def make_mlp(seed: int = 0):
    """The benchmark MLP as a distgrad module, initialised from ``seed``."""
    import distgrad as dg
    from distgrad import nn

    dg.manual_seed(seed)
    a, b, c, d = MLP_SIZES
    return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU(), nn.Linear(c, d))


def numpy_mlp_grads(params, x, y, grads):
    """Forward, softmax cross-entropy and backward of the MLP by hand. ``params`` are
    (w1, b1, w2, b2, w3, b3) numpy arrays; the gradients are written into ``grads`` (arrays of
    the same shapes). Returns the loss."""
    import numpy as np

    w1, b1, w2, b2, w3, b3 = params
    gw1, gb1, gw2, gb2, gw3, gb3 = grads
    h1 = x @ w1.T + b1
    a1 = np.maximum(h1, 0)
    h2 = a1 @ w2.T + b2
    a2 = np.maximum(h2, 0)
    logits = a2 @ w3.T + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    n = x.shape[0]
    loss = float(np.log(sums[:, 0]).sum() - shifted[np.arange(n), y].sum()) / n
    g3 = exp / sums
    g3[np.arange(n), y] -= 1
    g3 /= n
    np.matmul(g3.T, a2, out=gw3)
    np.sum(g3, axis=0, out=gb3)
    g2 = (g3 @ w3) * (h2 > 0)
    np.matmul(g2.T, a1, out=gw2)
    np.sum(g2, axis=0, out=gb2)
    g1 = (g2 @ w2) * (h1 > 0)
    np.matmul(g1.T, x, out=gw1)
    np.sum(g1, axis=0, out=gb1)
    return loss


def numpy_params(model):
    """Copies of a distgrad model's parameters as numpy arrays, in registration order."""
    return [p.detach().numpy().copy() for p in model.parameters()]


def make_distgrad_step(model, lr: float = LR):
    """A distgrad training step: forward, cross-entropy, backward, SGD update by hand."""
    import distgrad as dg
    import distgrad.nn.functional as F

    params = list(model.parameters())

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with dg.no_grad():
            for p in params:
                p -= lr * p.grad
                p.grad = None
        return loss.item()

    return step


def spawn_mpi(ranks: int) -> int:
    """Re-run the calling script under the mpiexec that belongs to this Python's mpi4py, one
    thread per rank; returns its exit status."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        DISTGRAD_BENCH_CHILD="1",
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.call([mpiexec, "-n", str(ranks), sys.executable, *sys.argv], env=env)
