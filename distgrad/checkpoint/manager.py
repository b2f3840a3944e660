"""``save`` / ``load`` / ``CheckpointManager``: resumable training checkpoints, also across
ranks (see the package docstring)."""

from __future__ import annotations

import logging
import numbers
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import distributed as dist
from .. import serialization
from ..safetensors import CheckpointError
from . import rng, store
from .data import ResumableLoader
from .lock import DirectoryLock, DirectoryLockedError

if TYPE_CHECKING:
    from ..distributed.checkpoint.stateful import Stateful
    from ..distributed.communicator import Communicator
    from ..nn import Module

logger = logging.getLogger(__name__)

__all__ = ["save", "load", "CheckpointManager", "CheckpointState"]


@dataclass
class CheckpointState:
    """What ``load`` restored besides the objects passed to it."""

    step: int
    epoch: int
    seed: int | None
    extra: object
    batches_done: int | None  # batches of ``epoch`` already trained on (a ResumableLoader's)
    path: str  # the checkpoint directory loaded
    world_size: int  # the number of ranks that saved it
    skipped: list[str] = field(default_factory=list)  # problems of newer checkpoints passed over


def _world() -> Communicator | None:
    """The communicator when this process is one of several ranks, else None."""
    if dist.is_initialized():
        comm = dist.get_communicator()
        if comm.world_size > 1:
            return comm
    return None


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"distgrad.checkpoint: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_objects(model: object, optimizer: object, scheduler: object, loader: object) -> None:
    for name, obj, methods in (
        ("model", model, ("state_dict", "load_state_dict")),
        ("optimizer", optimizer, ("state_dict", "load_state_dict")),
        ("scheduler", scheduler, ("state_dict", "load_state_dict")),
        ("loader", loader, ("__iter__",)),
    ):
        if (obj is not None or name == "model") and not all(hasattr(obj, m) for m in methods):
            raise TypeError(
                f"distgrad.checkpoint: {name} must have "
                f"{' and '.join(m + '()' for m in methods)}, got "
                f"{type(obj).__name__}"
            )


def save(
    directory: str | os.PathLike[str],
    *,
    model: Module,
    optimizer: Stateful | None = None,
    scheduler: Stateful | None = None,
    step: int = 0,
    epoch: int = 0,
    loader: Iterable[Any] | None = None,
    seed: int | None = None,
    extra: object = None,
    keep: int = 2,
) -> str:
    """Write a checkpoint of a training run into ``directory`` and commit it; return its path.

    Saves ``model``'s, ``optimizer``'s and ``scheduler``'s state dicts, ``step``, ``epoch``
    (the epoch to resume in), ``seed`` and ``extra`` (anything ``distgrad.save`` accepts), every
    rank's random streams and, for a ``ResumableLoader``, its position in the epoch (for a plain
    DataLoader: its generator). The newest ``keep`` checkpoints are kept.

    Call it on every rank: rank 0 writes, the others wait, and a failure on rank 0 raises on all
    of them (the original exception on rank 0, ``CheckpointError`` elsewhere)."""
    _check_objects(model, optimizer, scheduler, loader)
    step, epoch, keep = (
        _check_count("step", step, 0),
        _check_count("epoch", epoch, 0),
        _check_count("keep", keep, 1),
    )
    seed = None if seed is None else _check_count("seed", seed, 0)
    comm = _world()
    mine = {
        "rng": rng.capture(loader),
        "loader": loader.state_dict() if isinstance(loader, ResumableLoader) else None,
    }
    ranks = comm.allgather_object(mine) if comm is not None else [mine]
    path: str | None = None
    error: Exception | None = None
    if comm is None or comm.rank == 0:
        files: dict[str, object] = {"model.safetensors": model.state_dict()}
        if optimizer is not None:
            files["optimizer.safetensors"] = optimizer.state_dict()
        if scheduler is not None:
            files["scheduler.safetensors"] = scheduler.state_dict()
        files["meta.safetensors"] = {"step": step, "epoch": epoch, "seed": seed, "extra": extra}
        files["ranks.safetensors"] = ranks
        info = {"step": step, "epoch": epoch, "world_size": len(ranks)}
        try:
            path = store.commit(os.fspath(directory), files, info, keep, serialization.save)
            logger.info("saved checkpoint %s (step %s, epoch %s)", path, step, epoch)
        except Exception as exc:
            if comm is None:
                raise
            error = exc
    if comm is None:
        assert path is not None  # (commit returned it, or raised)
        return path
    path, failure = comm.broadcast_object(
        (path, None if error is None else f"{type(error).__name__}: {error}"), 0
    )
    if error is not None:
        raise error
    if failure is not None:
        raise CheckpointError(
            f"rank 0 failed to save the checkpoint in {str(directory)!r}: {failure}"
        )
    return path


def _decode(path: str, blobs: dict[str, bytearray], map_location: object) -> dict[str, Any]:
    out = {}
    for name, blob in blobs.items():
        # the manifest's SHA-256 of these bytes was checked by store.verify: hash once, and
        # decode in place (the arrays are views of the buffer; the state dicts copy them)
        where = repr(f"{path}/{name}")
        out[name.removesuffix(".safetensors")] = serialization._load(
            blob, map_location, False, False, where
        )
    return out


def _prepare(
    directory: str | os.PathLike[str],
    fallback: bool,
    map_location: object,
    wanted: dict[str, Any],
    rank: int,
    world: int,
) -> tuple[str, dict[str, Any], dict[str, Any], list[str]]:
    """Verify and decode the checkpoint to load on this rank, checking that it holds what the
    caller asked for; nothing is changed yet."""
    path, manifest, parts, skipped = store.open_checkpoint(
        os.fspath(directory), fallback, lambda path, blobs: _decode(path, blobs, map_location)
    )
    for name in ("optimizer", "scheduler"):
        if wanted[name] is not None and name not in parts:
            raise CheckpointError(
                f"cannot load checkpoint {path!r}: it holds no {name} state "
                f"(it was saved without {name}=); pass {name}=None"
            )
    ranks = parts["ranks"]
    loader = wanted["loader"]
    if isinstance(loader, ResumableLoader):
        if len(ranks) != world:
            raise CheckpointError(
                f"cannot load checkpoint {path!r}: it was saved by "
                f"{len(ranks)} ranks and this run has {world}, so the data "
                f"position cannot be restored; pass loader=None to start "
                f"the epoch over"
            )
        if ranks[rank]["loader"] is None:
            raise CheckpointError(
                f"cannot load checkpoint {path!r}: it holds no data position "
                f"(saved without a ResumableLoader); pass loader=None"
            )
    return path, manifest, parts, skipped


def _agree(comm: Communicator, error: BaseException | None, path: str | None) -> None:
    """Every rank learns every rank's verdict; all raise if any rank failed."""
    verdicts = comm.allgather_object(
        (path, None if error is None else f"{type(error).__name__}: {error}")
    )
    problems = [f"rank {r}: {msg}" for r, (_, msg) in enumerate(verdicts) if msg is not None]
    if error is not None:
        raise error
    if problems:
        raise CheckpointError(
            "loading the checkpoint failed on other ranks, so no rank loaded "
            "it:\n  " + "\n  ".join(problems)
        )
    if len({p for p, _ in verdicts}) > 1:
        raise CheckpointError(
            "the ranks found different checkpoints to load: "
            + ", ".join(f"rank {r}: {p}" for r, (p, _) in enumerate(verdicts))
        )


def _apply(
    parts: dict[str, Any],
    model: Module,
    optimizer: Any,
    scheduler: Stateful | None,
    strict: bool,
) -> None:
    """Load the state dicts; a failure leaves the optimizer and scheduler as they were (the
    model, loaded last, checks everything before copying)."""
    saved_opt = (optimizer.state, optimizer.param_groups) if optimizer is not None else None
    saved_sched = dict(scheduler.__dict__) if scheduler is not None else {}
    try:
        if optimizer is not None:
            optimizer.load_state_dict(parts["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(parts["scheduler"])
        model.load_state_dict(parts["model"], strict=strict)
    except BaseException:
        if optimizer is not None and saved_opt is not None:
            optimizer.state, optimizer.param_groups = saved_opt
        if scheduler is not None:
            scheduler.__dict__.clear()
            scheduler.__dict__.update(saved_sched)
        raise


def load(
    directory: str | os.PathLike[str],
    *,
    model: Module,
    optimizer: Stateful | None = None,
    scheduler: Stateful | None = None,
    loader: Iterable[Any] | None = None,
    map_location: object = None,
    fallback: bool = False,
    strict: bool = True,
) -> CheckpointState:
    """Restore the committed checkpoint in ``directory`` (or the checkpoint directory
    ``directory`` itself) into ``model``, ``optimizer``, ``scheduler``, the random streams and
    ``loader``; return the rest as a ``CheckpointState``.

    The manifest and the SHA-256 of every file are verified before anything is decoded, and
    nothing is ever unpickled. A checkpoint that fails verification raises ``CheckpointError``
    naming the file and the problem, unless ``fallback=True``: then the newest older committed
    checkpoint that verifies is loaded (with a warning; ``state.skipped`` lists the problems).
    ``FileNotFoundError`` when there is no checkpoint at all. Nothing is changed unless the
    whole checkpoint verified and matches what is asked for.

    Call it on every rank (each reads the files; all raise if any rank cannot load)."""
    _check_objects(model, optimizer, scheduler, loader)
    comm = _world()
    rank, world = (comm.rank, comm.world_size) if comm is not None else (0, 1)
    wanted = {"optimizer": optimizer, "scheduler": scheduler, "loader": loader}
    error: BaseException | None = None
    path: str | None = None
    try:
        path, manifest, parts, skipped = _prepare(
            directory, fallback, map_location, wanted, rank, world
        )
    except (CheckpointError, OSError) as exc:
        if comm is None:
            raise
        error = exc
    if comm is not None:
        _agree(comm, error, path)  # raises on every rank if any rank failed
    if error is not None or path is None:  # (a single process re-raised above)
        raise RuntimeError("distgrad.checkpoint.load: no checkpoint was prepared")
    if skipped:
        warnings.warn(
            f"distgrad.checkpoint.load: fell back to {path!r}:\n  " + "\n  ".join(skipped),
            RuntimeWarning,
            stacklevel=2,
        )
    _apply(parts, model, optimizer, scheduler, strict)
    ranks = parts["ranks"]
    if rank < len(ranks):
        rng.restore(ranks[rank]["rng"], loader)
    else:
        warnings.warn(
            f"distgrad.checkpoint.load: {path!r} was saved by {len(ranks)} ranks; "
            f"rank {rank}'s random streams are left as they are",
            RuntimeWarning,
            stacklevel=2,
        )
    if isinstance(loader, ResumableLoader):
        loader.load_state_dict(ranks[rank]["loader"])
    meta = parts["meta"]
    logger.info("loaded checkpoint %s (step %s, epoch %s)", path, meta["step"], meta["epoch"])
    position = ranks[min(rank, len(ranks) - 1)]["loader"]
    return CheckpointState(
        step=meta["step"],
        epoch=meta["epoch"],
        seed=meta["seed"],
        extra=meta["extra"],
        path=path,
        world_size=manifest["world_size"],
        batches_done=None if position is None else position["batches_done"],
        skipped=skipped,
    )


class CheckpointManager:
    """A checkpoint directory bound to the objects of one training run.

    The directory is locked by the job while the manager is used (rank 0 holds
    ``DirectoryLock(directory)`` from the first ``restore()`` or ``save()`` until ``close()`` or
    exit): a second job writing the same directory gets ``DirectoryLockedError`` naming the
    owner's host and pid on every rank; a lock whose owner is gone is taken over with a log
    message (an elastic restart after a killed rank 0).

    Typical use::

        ckpt = CheckpointManager("runs/exp1", model=model, optimizer=opt, scheduler=sched,
                                 loader=loader, keep=3)        # loader: a ResumableLoader
        state = ckpt.restore()                                 # None on a fresh start
        start = state.epoch if state else 0
        for epoch in range(start, epochs):
            for x, y in loader:
                ...
                if step % 100 == 0:
                    ckpt.save(step, epoch)                     # mid-epoch: resumes here
            ckpt.save(step, epoch + 1)                         # end of epoch: the next one
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        model: Module,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        loader: Iterable[Any] | None = None,
        keep: int = 2,
        map_location: object = None,
    ):
        _check_objects(model, optimizer, scheduler, loader)
        _check_count("keep", keep, 1)
        self.directory, self.keep, self.map_location = os.fspath(directory), keep, map_location
        self.model, self.optimizer, self.scheduler, self.loader = (
            model,
            optimizer,
            scheduler,
            loader,
        )
        self._lock: DirectoryLock | None = None
        self._locked = False

    def _hold_lock(self) -> None:
        """Rank 0 takes the directory's lock (once); every rank raises if it cannot."""
        if self._locked:
            return
        comm = _world()
        error: Exception | None = None
        if comm is None or comm.rank == 0:
            lock = DirectoryLock(self.directory)
            try:
                lock.acquire()
                self._lock = lock
            except (DirectoryLockedError, OSError) as exc:
                error = exc
        if comm is not None:
            failure = comm.broadcast_object(None if error is None else str(error), 0)
            if error is None and failure is not None:
                error = DirectoryLockedError(f"rank 0 could not lock the directory: {failure}")
        if error is not None:
            raise error
        self._locked = True

    def close(self) -> None:
        """Release the directory's lock (also done at exit); a later call locks it again."""
        if self._lock is not None:
            self._lock.release()
        self._lock, self._locked = None, False

    def save(
        self, step: int, epoch: int = 0, *, seed: int | None = None, extra: object = None
    ) -> str:
        """``distgrad.checkpoint.save`` of the bound objects (locking the directory first)."""
        self._hold_lock()
        return save(
            self.directory,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            loader=self.loader,
            step=step,
            epoch=epoch,
            seed=seed,
            extra=extra,
            keep=self.keep,
        )

    def restore(self, fallback: bool = False) -> CheckpointState | None:
        """``distgrad.checkpoint.load`` into the bound objects (locking the directory first);
        None when the directory holds no checkpoint yet."""
        self._hold_lock()
        try:
            return load(
                self.directory,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                loader=self.loader,
                map_location=self.map_location,
                fallback=fallback,
            )
        except FileNotFoundError:
            return None

    def latest(self) -> str | None:
        """The committed checkpoint's path, or None."""
        return store.latest(self.directory)
