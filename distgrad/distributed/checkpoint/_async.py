"""``async_save``: the snapshot is taken and the writers agreed on in the caller (one
all-gather and one broadcast), then the files are written and committed on a background
thread while training goes on.

The commit needs no collective, so the background thread never talks MPI while the step loop
does: each rank writes its file into the staging directory, fsyncs it and then drops a small
``.done-<rank>`` record (its file's SHA-256 and size, or its error); rank 0's thread waits for
every rank's record, then writes the metadata and the manifest, renames the staging directory
and replaces ``LATEST``. A crash anywhere before that rename leaves the previous checkpoint
committed (the next save removes the staging directory). The other ranks' futures finish when
rank 0 committed or gave up (the staging directory is gone)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any

from ...checkpoint import store
from ...safetensors import CheckpointError, atomic_write
from ..communicator import Communicator
from ..groups import ProcessGroup
from . import _storage as st
from ._comm import communicator
from ._save_load import CheckpointId, StateDict, commit, prepare

logger = logging.getLogger(__name__)

TIMEOUT = float(os.environ.get("DISTGRAD_ASYNC_SAVE_TIMEOUT", "1800"))
_inflight: list[AsyncSaveFuture] = []


class AsyncSaveFuture:
    """What ``async_save`` returns (as the ``concurrent.futures.Future`` torch's does):
    ``result(timeout=None)`` waits and returns the committed checkpoint's path or raises the
    save's error; ``done()`` says whether it has finished."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: str | None = None
        self._error: BaseException | None = None

    def _finish(self, value: str | None = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error
        self._event.set()

    def done(self) -> bool:
        """Whether the save has finished (committed or failed)."""
        return self._event.is_set()

    def result(self, timeout: float | None = None) -> str:
        """The committed checkpoint's path; raises the save's error, or ``TimeoutError``."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"async_save did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        if self._value is None:  # (_finish gives a path or an error)
            raise RuntimeError("async_save finished without a checkpoint path or an error")
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The save's error, or None."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"async_save did not finish within {timeout} s")
        return self._error


def _record(staging: str, rank: int, entry: dict[str, Any]) -> None:
    with atomic_write(os.path.join(staging, f".done-{rank}")) as f:
        f.write(json.dumps(entry).encode())


def _wait_records(staging: str, world: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT
    records: list[dict[str, Any] | None] = [None] * world
    while True:
        for r in range(world):
            if records[r] is None:
                try:
                    with open(os.path.join(staging, f".done-{r}"), "rb") as f:
                        records[r] = json.loads(f.read())
                except (FileNotFoundError, ValueError):
                    pass
        done = [x for x in records if x is not None]
        if len(done) == world:
            return done
        if time.monotonic() > deadline:
            missing = [r for r in range(world) if records[r] is None]
            raise CheckpointError(f"async_save: ranks {missing} did not report within {TIMEOUT} s")
        time.sleep(0.005)


NICE = int(os.environ.get("DISTGRAD_ASYNC_SAVE_NICE", "19"))


def _lower_priority() -> None:
    """Let the step loop have the CPU first: this thread (and the hashing threads it starts,
    which inherit it) runs at a higher nice value (Linux: threads are scheduled separately)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def _worker(
    future: AsyncSaveFuture,
    checkpoint_id: CheckpointId,
    snapshot: st.Snapshot,
    plans: list[st.Plan],
    writers: dict[st.PieceKey, int],
    staging: str,
    name: str,
    sequence: int,
    rank: int,
    keep: int,
) -> None:
    world = len(plans)
    if NICE:
        _lower_priority()
    try:
        try:
            files = st.waves(plans[rank], writers, rank)
            entry: dict[str, Any] = {"files": st.write_rank_files(staging, snapshot, files)}
        except Exception as exc:
            entry = {"error": f"{type(exc).__name__}: {exc}"}
            raise
        finally:
            snapshot.pieces = []  # the staged copies are freed once written
            if world > 1 or "error" not in entry:
                _record(staging, rank, entry)
        if rank == 0:
            records = _wait_records(staging, world)
            problems = [f"rank {r}: {x['error']}" for r, x in enumerate(records) if "error" in x]
            if problems:
                store.abort(staging)
                raise CheckpointError(
                    "async_save: writing failed, nothing was committed:\n  " + "\n  ".join(problems)
                )
            for r in range(world):
                os.unlink(os.path.join(staging, f".done-{r}"))
            listed = {name: info for x in records for name, info in x["files"].items()}
            path = commit(checkpoint_id, plans, writers, staging, name, sequence, listed, keep)
            logger.info("async_save committed %s", path)
        else:
            deadline = time.monotonic() + TIMEOUT
            while os.path.isdir(staging):
                if time.monotonic() > deadline:
                    raise CheckpointError(
                        f"async_save: rank 0 did not commit {staging!r} within {TIMEOUT} s"
                    )
                time.sleep(0.005)
            path = os.path.join(os.fspath(checkpoint_id), name)
            if not os.path.isfile(os.path.join(path, store.MANIFEST)):
                raise CheckpointError(
                    f"async_save: rank 0 did not commit {path!r} (see rank 0's error)"
                )
        future._finish(path)
    except BaseException as exc:  # reported through the future
        if rank == 0:
            store.abort(staging)
        future._finish(error=exc)


def async_save(
    state_dict: StateDict,
    *,
    checkpoint_id: CheckpointId,
    storage_writer: object = None,
    planner: object = None,
    process_group: ProcessGroup | Communicator | None = None,
    step: int | None = None,
    keep: int = 2,
) -> AsyncSaveFuture:
    """Start saving ``state_dict`` as ``save`` does and return an ``AsyncSaveFuture`` at once;
    the files are written and committed on a background thread while training continues.

    Collective at the call (every rank calls it): the state is copied to host staging buffers
    (only what this rank writes: its shards, its share of the replicated tensors) and the ranks
    agree who writes what, so the caller may change the state right after. One async save is in
    flight at a time: a new call first waits for the previous one. A crash during the write
    leaves the previous checkpoint committed."""
    if storage_writer is not None or planner is not None:
        raise NotImplementedError(
            "distgrad.distributed.checkpoint: custom storage writers and planners are not supported"
        )
    while _inflight:
        previous = _inflight.pop()
        previous.exception()  # wait; its error was or will be seen through its own future
    comm = communicator(process_group)
    rank = 0 if comm is None else comm.rank
    snapshot, plans, writers, staging, name, sequence = prepare(
        state_dict, checkpoint_id, comm, step, copy=False
    )
    # the staging copy: only what this rank writes (on a GPU a device copy, brought to the
    # host one wave at a time by the writer)
    snapshot.pieces = [
        (key, shape, dtype, a, b, rows.copy())
        for key, shape, dtype, a, b, rows in snapshot.pieces
        if writers.get((key, a, b)) == rank
    ]
    future = AsyncSaveFuture()
    thread = threading.Thread(
        target=_worker,
        args=(future, checkpoint_id, snapshot, plans, writers, staging, name, sequence, rank, keep),
        name="distgrad-async-save",
        daemon=True,
    )
    thread.start()
    _inflight.append(future)
    return future
