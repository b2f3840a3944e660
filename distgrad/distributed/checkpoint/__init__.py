"""``distgrad.distributed.checkpoint``: distributed checkpoints that reshard on load, with the
names of ``torch.distributed.checkpoint`` (DCP).

::

    import distgrad.distributed.checkpoint as dcp
    from distgrad.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd, "loader": loader, "rng": RNGState()},
             checkpoint_id="runs/exp1")
    ...  # any layout, any number of ranks:
    state = {"model": model_sd, "optim": optim_sd, "loader": loader, "rng": RNGState()}
    dcp.load(state, checkpoint_id="runs/exp1")          # fills the tensors in place
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])

**Writing.** Every rank calls ``save``. The ranks first agree (one all-gather) who writes
what: a tensor every rank holds whole (DistributedDataParallel, ZeRO-1 parameters) is written
once, the distinct tensors spread round-robin over the ranks; each ``ShardedTensor`` piece
(fully_shard parameters, sharded optimizer state) by its owner. Each rank writes one file
``__<rank>_0.distcp`` (safetensors) into a staging directory of the checkpoint root; rank 0
writes ``.metadata`` (JSON: every tensor's global shape, dtype and pieces as dim-0 row ranges
``start:stop`` in a file; the plain values; the per-rank values) and commits through
``distgrad.checkpoint.store``: the manifest lists every file's SHA-256 and size (each rank
reports its own), the staging directory is renamed and ``LATEST`` replaced only after every rank
reported success. A failure on any rank, or a crash, leaves the previous checkpoint committed.

**Reading.** ``load`` takes the state dict of the *current* layout (whole tensors, or this
rank's ``ShardedTensor`` rows) and fills it in place: each rank reads only the files holding
pieces that overlap what it needs, verifies each such file's size and SHA-256 once, and copies
the overlapping rows. A missing, damaged or mismatched file or tensor raises
``CheckpointError`` naming the file and the tensor, on every rank, before anything is changed.
So a checkpoint saved by N ranks in any layout loads on M ranks in any other (M need not divide
N) with no conversion step.

``checkpoint_id`` is a checkpoint root directory: each save commits a new checkpoint in it
(``ckpt-<step>``; ``step`` defaults to the commit number) and keeps the newest ``keep``; load
reads the one ``LATEST`` names (or a checkpoint directory named directly), refusing a rolled
back pointer as ``distgrad.checkpoint`` does.

Differences from torch: the shards are dim-0 row ranges (as fully_shard and ZeRO-1 shard), not
DTensor placements; no storage writer/reader or planner plug-ins; the checkpoint needs a
filesystem every rank sees."""

from __future__ import annotations

import numpy as np

from ...checkpoint import store
from ...safetensors import CheckpointError
from ._async import AsyncSaveFuture, async_save
from ._save_load import load, save
from ._tree import PerRank, ShardedTensor
from .stateful import RNGState, Stateful

__all__ = [
    "save",
    "load",
    "async_save",
    "AsyncSaveFuture",
    "ShardedTensor",
    "PerRank",
    "RNGState",
    "Stateful",
    "CheckpointError",
]

del np, store
