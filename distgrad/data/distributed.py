"""``DistributedSampler``: each rank's share of a map-style dataset, as PyTorch's."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .sampler import Sampler

__all__ = ["DistributedSampler"]


class DistributedSampler(Sampler):
    """Rank ``rank``'s share of ``dataset``: every ``num_replicas``-th index of one (shuffled)
    order that all ranks compute alike from ``seed + epoch``.

    Every rank gets ``len(self)`` indices: without ``drop_last`` the order is padded by repeating
    its start, with it the tail that does not divide evenly is dropped. Call ``set_epoch`` at the
    start of every epoch so that each epoch is shuffled differently. ``num_replicas`` and
    ``rank`` default to the world of ``distgrad.distributed``.

    ``start_index`` (0 unless a resumed checkpoint set it) is a global sample index: the next
    iteration skips the first ``start_index`` positions of the epoch's order and shares the rest
    among the ranks the same way (then it is reset to 0). As the order depends on ``seed`` and
    the epoch only, a run resumed on a different number of ranks neither skips nor repeats a
    sample of the epoch (see ``distgrad.checkpoint.ResumableLoader``)."""

    def __init__(
        self,
        dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ):
        if num_replicas is None or rank is None:
            from .. import distributed as dist

            if not dist.is_initialized():
                raise RuntimeError(
                    "DistributedSampler: pass num_replicas and rank, or call "
                    "distgrad.distributed.init() first"
                )
            num_replicas = dist.world_size() if num_replicas is None else num_replicas
            rank = dist.rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        self.start_index = 0
        n = len(dataset)
        if drop_last:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        start, self.start_index = min(int(self.start_index), n), 0
        if start:  # resumed at a global sample index: share the rest of the order
            rest = indices[start:]
            per = (
                len(rest) // self.num_replicas
                if self.drop_last
                else -(-len(rest) // self.num_replicas)
            )
            rest = np.resize(rest, per * self.num_replicas) if len(rest) else rest
            return iter(rest[self.rank :: self.num_replicas].tolist())
        if self.total_size > n:
            indices = np.resize(indices, self.total_size)  # repeats from the start
        indices = indices[self.rank : self.total_size : self.num_replicas]
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use a different shuffle for ``epoch`` (the same on every rank)."""
        self.epoch = epoch
