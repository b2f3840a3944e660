"""``distgrad.distributed.optim``: optimizers over ranks, as ``torch.distributed.optim``."""

from .zero_redundancy_optimizer import ZeroRedundancyOptimizer

__all__ = ["ZeroRedundancyOptimizer"]
