"""Shared by the fault workers (their folder is first on ``sys.path`` when they run)."""

import json
import os
import time

import numpy as np

import distgrad
import distgrad.distributed as dist
from distgrad import nn


def mark_fault(label: str = "fault") -> None:
    """Note the moment a fault is injected (``faultlib.Job.detection_s`` counts from it)."""
    directory = os.environ.get("DISTGRAD_FAULT_DIR")
    if directory:
        rank = os.environ.get("PMI_RANK", "0")
        with open(os.path.join(directory, f"fault-{label}-{rank}"), "w") as f:
            f.write(f"{label} {time.time()!r}\n")


def emit(**fields) -> None:
    """One ``RESULT {json}`` line on stdout, for the test to read (``faultlib.results``)."""
    print("RESULT " + json.dumps({"rank": dist.rank(), **fields}), flush=True)


class Net(nn.Module):
    """A small MLP with an optional branch (``use_extra``) to leave parameters unused."""

    def __init__(self, out: int = 3):
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.head = nn.Linear(8, out)
        self.extra = nn.Linear(8, out)

    def forward(self, x, use_extra=True):
        h = self.body(x).relu()
        out = self.head(h)
        return out + self.extra(h) if use_extra else out


def batch(step: int, rank: int, n: int = 4):
    """A deterministic batch per (step, rank)."""
    rng = np.random.default_rng(1000 * step + rank)
    return distgrad.tensor(rng.standard_normal((n, 6)).astype(np.float32))


def flat_params(module) -> np.ndarray:
    return np.concatenate(
        [p.detach().numpy().ravel().astype(np.float64) for p in module.parameters()]
    )


def assert_replicas_equal(module, where: str) -> None:
    """Raise on every rank unless every rank's parameters are bit-identical."""
    every = dist.get_communicator().allgather_object(flat_params(module))
    for r, params in enumerate(every[1:], 1):
        if not np.array_equal(params, every[0]):
            raise AssertionError(f"{where}: parameters of rank {r} differ from rank 0's")
