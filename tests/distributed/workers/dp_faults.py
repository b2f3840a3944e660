"""DataParallel faults; the mode (argv[1]) says which."""

import sys

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
from distgrad.autograd import Function
from distgrad.distributed import DataParallel

dist.init()
R = dist.rank()
mode = sys.argv[1]


class Boom(Function):
    """Identity whose backward fails on rank 1."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        if R == 1:
            raise RuntimeError("backward failed on purpose")
        return g


class Net(nn.Module):
    def __init__(self, out=3, extra=False):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.fc = nn.Linear(4, out)
        if extra:
            self.more = nn.Linear(out, 2)

    def forward(self, x):
        return self.fc(Boom.apply(self.body(x)))


if mode in ("shape", "count"):
    model = Net(out=5 if mode == "shape" and R == 1 else 3, extra=mode == "count" and R == 1)
    try:
        DataParallel(model)
    except RuntimeError as e:
        print(f"rank {R} raised: {e}", flush=True)
    dist.barrier()
elif mode == "backward":
    dp = DataParallel(Net(), bucket_cap_mb=1e-9, first_bucket_mb=1e-9)
    dp(distgrad.randn(8, 4)).sum().backward()
print(f"rank {R} finished", flush=True)
