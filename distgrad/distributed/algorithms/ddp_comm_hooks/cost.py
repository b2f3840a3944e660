"""Bytes one DistributedDataParallel step sends, per hook: the formula that
``StepStats.sent_bytes`` is tested against and the cost model builds on.

Accounting as ``distgrad/distributed/traffic.py`` (the ZeRO paper's): an allreduce of n bytes
counts 2n, a reduce-scatter its input, an all-gather its output; the ring factor
(world - 1) / world is left out. With L ranks per node and hierarchical allreduce, an
allreduce of n elements becomes a reduce-scatter and an all-gather of L*ceil(n/L) elements
inside the node ("intra") and an allreduce of ceil(n/L) across nodes ("inter").
"""

from __future__ import annotations

from collections.abc import Sequence

from ...hierarchical import hierarchical_bytes
from .powerSGD_hook import batched_side, should_compress

__all__ = ["predicted_step_bytes", "HOOKS"]

#: The names ``predicted_step_bytes`` knows (None: no hook).
HOOKS = (None, "allreduce", "fp16", "bf16", "powerSGD", "batched_powerSGD")


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _allreduce(numel: int, itemsize: int, ranks_per_node: int | None, out: dict) -> None:
    """Add one allreduce of ``numel`` elements (by the DDP's allreduce) to ``out``."""
    if numel == 0:
        return
    if ranks_per_node:
        level = hierarchical_bytes(numel, itemsize, ranks_per_node)
        out["intra"] += level["intra"]
        out["inter"] += level["inter"]
    else:
        out["flat"] += 2 * numel * itemsize


def predicted_step_bytes(
    buckets: list,
    itemsize: int,
    hook: str | None = None,
    *,
    matrix_approximation_rank: int = 1,
    min_compression_rate: float = 2,
    compressing: bool = True,
    ranks_per_node: int | None = None,
) -> dict:
    """Bytes one rank's synchronised backward counts (``StepStats.sent_bytes``).

    ``buckets``: the parameter shapes of each bucket, in launch order (``[[tuple(p.shape) for
    p in b.params] for b in ddp.buckets]``); ``itemsize``: the gradients' bytes per element;
    ``hook``: None (no hook), ``"allreduce"``, ``"fp16"``, ``"bf16"``, ``"powerSGD"`` or
    ``"batched_powerSGD"`` (``compressing``: past ``start_powerSGD_iter``; the built-in hooks reducing over the
    DDP's own group); ``ranks_per_node``: set when the hierarchical allreduce is used.
    Returns ``{"total", "flat", "intra", "inter"}`` (flat: bytes of flat allreduces)."""
    if hook not in HOOKS:
        raise ValueError(f"predicted_step_bytes: hook must be one of {HOOKS}, got {hook!r}")
    out = {"flat": 0, "intra": 0, "inter": 0}
    params = sum(len(b) for b in buckets)
    for shapes in buckets:
        numel = sum(_numel(s) for s in shapes)
        if hook is None:  # gradients and one 'used' flag per parameter, in the bucket dtype
            _allreduce(numel + len(shapes), itemsize, ranks_per_node, out)
        elif hook == "allreduce" or (hook.endswith("powerSGD") and not compressing):
            _allreduce(numel, itemsize, ranks_per_node, out)
        elif hook == "batched_powerSGD":
            side, r = batched_side(numel, matrix_approximation_rank)
            for _ in range(2):  # P and Q: side x r each
                _allreduce(side * r, itemsize, ranks_per_node, out)
        elif hook in ("fp16", "bf16"):
            _allreduce(numel, 2, ranks_per_node, out)
        else:
            plain = p_size = q_size = 0
            for shape in shapes:
                if len(shape) <= 1:
                    plain += _numel(shape)
                    continue
                n, m = int(shape[0]), _numel(shape) // int(shape[0])
                r = min(n, m, matrix_approximation_rank)
                if should_compress(n, m, r, min_compression_rate)[0]:
                    p_size, q_size = p_size + n * r, q_size + m * r
                else:
                    plain += n * m
            for size in (plain, p_size, q_size):
                _allreduce(size, itemsize, ranks_per_node, out)
    if hook is not None and params:  # the 'used' flags: one float32 allreduce, flat
        out["flat"] += 2 * 4 * params
    out["total"] = out["flat"] + out["intra"] + out["inter"]
    return out
