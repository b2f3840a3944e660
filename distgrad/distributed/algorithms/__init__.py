"""``distgrad.distributed.algorithms``: communication algorithms for data parallelism
(``ddp_comm_hooks``: the built-in DDP communication hooks)."""

from . import ddp_comm_hooks

__all__ = ["ddp_comm_hooks"]
