"""``save`` and ``load`` (see the package docstring)."""

from __future__ import annotations

import logging
import os
from typing import Any

from ...checkpoint import store
from ...safetensors import CheckpointError
from ..communicator import Communicator
from ..groups import ProcessGroup
from . import _storage as st
from ._comm import communicator
from ._tree import Path, assign, from_json

# What a save writes and a load fills: nested dicts (and lists) of tensors, ShardedTensors,
# plain values and objects with state_dict()/load_state_dict().
StateDict = dict[str, Any]
CheckpointId = str | os.PathLike[str]

logger = logging.getLogger(__name__)


def _step(step: object, sequence_hint: int) -> int:
    if step is None:
        return sequence_hint
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"distgrad.distributed.checkpoint: step must be an int >= 0, got {step!r}")
    return step


def _next_sequence(root: str) -> int:
    try:
        pointer = store._read_pointer(root)
    except (CheckpointError, OSError):
        pointer = None
    return 1 + (pointer["sequence"] if pointer else 0)


def prepare(
    state_dict: StateDict,
    checkpoint_id: CheckpointId,
    comm: Communicator | None,
    step: int | None,
    copy: bool,
) -> tuple[st.Snapshot, list[st.Plan], dict[st.PieceKey, int], str, str, int]:
    """The collective start of a save: snapshot, agree on writers, open the staging directory.
    Returns ``(snapshot, plans, writers, staging, name, sequence)``; raises on every rank if
    rank 0 could not open the staging directory."""
    rank = 0 if comm is None else comm.rank
    if comm is None:
        snapshot = st.Snapshot(state_dict, rank, copy)
        plans = [snapshot.plan()]
    else:  # a rank that cannot take its snapshot must not leave the others waiting
        try:
            snapshot = st.Snapshot(state_dict, rank, copy)
        except Exception as exc:
            comm.allgather_object((None, f"{type(exc).__name__}: {exc}"))
            raise
        gathered = comm.allgather_object((snapshot.plan(), None))
        failed = [f"rank {r}: {m}" for r, (_, m) in enumerate(gathered) if m is not None]
        if failed:
            raise CheckpointError(
                f"distgrad.distributed.checkpoint: save into {str(checkpoint_id)!r} failed on "
                f"other ranks, nothing was written:\n  " + "\n  ".join(failed)
            )
        plans = [plan for plan, _ in gathered]
    writers = st.assign_writers(plans)
    opened: tuple[str, str, int] | None = None
    error: str | None = None
    if rank == 0:
        try:
            root = str(checkpoint_id)
            os.makedirs(root, exist_ok=True)
            opened = store.begin(root, _step(step, _next_sequence(root)))
        except Exception as exc:
            if comm is None:
                raise
            error = f"{type(exc).__name__}: {exc}"
    if comm is not None:
        opened, error = comm.broadcast_object((opened, error), 0)
        if error is not None:
            raise CheckpointError(
                f"rank 0 could not start the checkpoint in {checkpoint_id!r}: {error}"
            )
    if opened is None:  # (rank 0 opened it or raised; the others received it)
        raise RuntimeError("distgrad.distributed.checkpoint: no staging directory was opened")
    return (snapshot, plans, writers, *opened)


def commit(
    checkpoint_id: CheckpointId,
    plans: list[st.Plan],
    writers: dict[st.PieceKey, int],
    staging: str,
    name: str,
    sequence: int,
    listed: dict[str, dict[str, Any]],
    keep: int,
) -> str:
    """Rank 0: the metadata, the manifest, the rename and the pointer."""
    meta = st.metadata(plans, writers)
    listed = {**listed, st.METADATA: st.write_metadata(staging, meta)}
    info = {"step": int(name.split("-")[1].split(".")[0]), "world_size": len(plans)}
    return store.finish(os.fspath(checkpoint_id), staging, name, sequence, info, listed, keep)


def save(
    state_dict: StateDict,
    *,
    checkpoint_id: CheckpointId,
    storage_writer: object = None,
    planner: object = None,
    process_group: ProcessGroup | Communicator | None = None,
    step: int | None = None,
    keep: int = 2,
) -> str:
    """Save ``state_dict`` (nested dicts of Tensors, ``ShardedTensor``s, plain values and
    objects with ``state_dict()``) from every rank of ``process_group`` into the checkpoint
    root ``checkpoint_id``; returns the committed checkpoint's path (the same on every rank).

    Collective: every rank calls it. Each rank writes what it owns, rank 0 commits after every
    rank reported success; any failure raises on every rank and leaves the previous checkpoint
    committed. ``step`` names the checkpoint (default: the commit number); the newest ``keep``
    are kept. ``storage_writer`` and ``planner`` are accepted for torch compatibility and must
    be None."""
    if storage_writer is not None or planner is not None:
        raise NotImplementedError(
            "distgrad.distributed.checkpoint: custom storage writers and planners are not supported"
        )
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(
            f"distgrad.distributed.checkpoint.save: keep must be an int >= 1, got {keep!r}"
        )
    comm = communicator(process_group)
    rank = 0 if comm is None else comm.rank
    snapshot, plans, writers, staging, name, sequence = prepare(
        state_dict, checkpoint_id, comm, step, copy=False
    )
    mine: dict[str, dict[str, Any]] | None = None
    error: Exception | None = None
    try:
        mine = st.write_rank_files(staging, snapshot, st.waves(plans[rank], writers, rank))
    except Exception as exc:
        if comm is None:
            store.abort(staging)
            raise
        error = exc
    reports = (
        [(mine, None)]
        if comm is None
        else comm.allgather_object(
            (mine, None if error is None else f"{type(error).__name__}: {error}")
        )
    )
    path: str | None = None
    failure: str | None = None
    if rank == 0:
        problems = [f"rank {r}: {msg}" for r, (_, msg) in enumerate(reports) if msg is not None]
        if problems:
            store.abort(staging)
            failure = "writing failed, nothing was committed:\n  " + "\n  ".join(problems)
        else:
            listed = {
                name: info
                for files, _ in reports
                if files is not None  # (None only on a rank that reported an error)
                for name, info in files.items()
            }
            try:
                path = commit(checkpoint_id, plans, writers, staging, name, sequence, listed, keep)
                logger.info("saved distributed checkpoint %s (%d ranks)", path, len(plans))
            except Exception as exc:
                if comm is None:
                    raise
                failure = f"rank 0 could not commit: {type(exc).__name__}: {exc}"
    if comm is not None:
        path, failure = comm.broadcast_object((path, failure), 0)
    if error is not None:
        raise error
    if failure is not None:
        raise CheckpointError(
            f"distgrad.distributed.checkpoint.save into {checkpoint_id!r}: {failure}"
        )
    if path is None:  # (rank 0 committed it or reported why not)
        raise RuntimeError("distgrad.distributed.checkpoint.save: no checkpoint was committed")
    return path


def load(
    state_dict: StateDict,
    *,
    checkpoint_id: CheckpointId,
    storage_reader: object = None,
    planner: object = None,
    process_group: ProcessGroup | Communicator | None = None,
) -> None:
    """Load the checkpoint committed in ``checkpoint_id`` into ``state_dict`` in place: every
    Tensor and ``ShardedTensor`` of it is filled with its rows (from whatever layout and number
    of ranks saved it), plain values are replaced, objects with ``load_state_dict()`` get
    theirs. Collective: every rank calls it with the state dict of its own layout.

    Everything is read and verified (sizes, SHA-256, shapes, dtypes, coverage) on every rank
    before anything is changed; a problem on any rank raises ``CheckpointError`` (naming the
    file and the tensor) on all of them and leaves ``state_dict`` and the objects as they
    were. ``storage_reader`` and ``planner`` must be None (torch compatibility)."""
    if storage_reader is not None or planner is not None:
        raise NotImplementedError(
            "distgrad.distributed.checkpoint: custom storage readers and planners are not supported"
        )
    comm = communicator(process_group)
    rank = 0 if comm is None else comm.rank
    error: Exception | None = None
    path: str | None = None
    try:
        tree, stateful = st.expand(state_dict)
        path, manifest = st.find(checkpoint_id)
        meta = st.read_metadata(path, manifest)
        where = os.path.join(path, st.METADATA)
        skip = tuple(p for p, _ in stateful)
        tensors, values = st.plan_reads(tree, meta, where, skip)
        subtrees: dict[Path, Any] = {}
        for p, _ in stateful:
            subtrees[p] = st.saved_subtree(meta, p, rank)
            if subtrees[p] is None:
                raise CheckpointError(
                    f"cannot load checkpoint {where!r}: it holds no state for "
                    f"{'.'.join(map(str, p))!r} (missing key)"
                )
        arrays = st.read_pieces(path, manifest, meta, tensors)
    except (CheckpointError, OSError) as exc:
        if comm is None:
            raise
        error = exc
    if comm is not None:
        verdicts = comm.allgather_object(
            (path, None if error is None else f"{type(error).__name__}: {error}")
        )
        if error is not None:
            raise error
        problems = [f"rank {r}: {m}" for r, (_, m) in enumerate(verdicts) if m is not None]
        if problems:
            raise CheckpointError(
                "loading the checkpoint failed on other ranks, so no rank loaded it:\n  "
                + "\n  ".join(problems)
            )
        if len({p for p, _ in verdicts}) > 1:
            raise CheckpointError(
                "the ranks found different checkpoints to load: "
                + ", ".join(f"rank {r}: {p}" for r, (p, _) in enumerate(verdicts))
            )
    # verified everywhere: apply (nothing below can fail on the data)
    for (_, target, _, _, _), rows in zip(tensors, arrays):
        local = target  # a whole tensor, or a ShardedTensor: this rank's rows
        xp = local.device.xp if hasattr(local, "device") else None
        values_ = rows.reshape(local.array.shape) if rows.size else rows.reshape(local.array.shape)
        local.array[...] = values_ if xp is None or xp.__name__ == "numpy" else xp.asarray(values_)
        local.bump_version()
    for path_, _, key in values:
        if key in meta["per_rank"]:
            value = [from_json(v) for v in meta["per_rank"][key]]
        else:
            value = from_json(meta["objects"][key])
        assign(tree, path_, value)
        if path_ and not any(path_[: len(p)] == p for p, _ in stateful):
            assign(state_dict, path_, value)
    for p, obj in sorted(stateful, key=lambda item: -len(item[0])):
        sub = tree
        for k in p:
            sub = sub[k]
        merged = dict(subtrees[p])
        for k, v in sub.items() if isinstance(sub, dict) else ():
            if k not in merged:
                merged[k] = v  # tensors of the Stateful's own dict, filled above
        obj.load_state_dict(merged)
    logger.info("loaded distributed checkpoint %s on rank %d", path, rank)
