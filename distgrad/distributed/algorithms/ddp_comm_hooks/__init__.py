"""Built-in DDP communication hooks (``torch.distributed.algorithms.ddp_comm_hooks``):

- ``default_hooks``: ``allreduce_hook`` (what DDP does without a hook), ``fp16_compress_hook``,
  ``bf16_compress_hook`` (half the bytes; divide by the world size before the cast, so large
  gradients on many ranks do not overflow);
- ``powerSGD_hook``: ``PowerSGDState``, ``powerSGD_hook``, ``batched_powerSGD_hook`` (rank-r low-rank compression with
  error feedback and warm start, Vogels et al. 2019);
- ``cost``: ``predicted_step_bytes``, the bytes one step sends with each hook (the formula the
  tests check the measured bytes against, and the cost model uses).

Register with ``ddp.register_comm_hook(state, hook)``; docs/comm_hooks.md says when to use which.
"""

from . import cost, default_hooks, powerSGD_hook
from .cost import predicted_step_bytes

__all__ = ["default_hooks", "powerSGD_hook", "cost", "predicted_step_bytes"]
