"""``distgrad.checkpoint``: resumable training checkpoints that survive crashes.

(Activation checkpointing, which trades compute for memory, is ``distgrad.utils.checkpoint``.)

::

    loader = ResumableLoader(DataLoader(dataset, batch_size=64, shuffle=True))
    state = checkpoint.load("runs/exp1", model=model, optimizer=opt, scheduler=sched,
                            loader=loader, fallback=True)       # FileNotFoundError if none
    ...
    checkpoint.save("runs/exp1", model=model, optimizer=opt, scheduler=sched, loader=loader,
                    step=step, epoch=epoch, keep=2)

or ``CheckpointManager`` (binds the directory and the objects; ``restore()`` returns None on a
fresh start).

**What is saved.** The model's, optimizer's and scheduler's state dicts; ``step``, ``epoch`` (the
epoch to resume *in*: pass ``epoch + 1`` when saving after an epoch ended), ``seed`` and
``extra``; every rank's random streams (distgrad's default generator, numpy's global state,
Python's ``random``, the DataLoader's own generator); and, through a ``ResumableLoader``, the
position inside the epoch, so training resumes at the next batch and is bit-identical to an
uninterrupted run (dropout masks, shuffling, optimizer moments included). A plain ``DataLoader``
resumes at epoch boundaries only. Random streams of DataLoader worker processes restart at the
resumed batch (from the same base seed), and GPU-side streams are not saved (distgrad draws its
random numbers on the host).

**On disk** (see ``store.py``): a directory per checkpoint with safetensors files written by
``distgrad.save`` and a ``MANIFEST.json`` holding the SHA-256 and size of each file and its own
checksum; a checkpoint is committed by atomically replacing the ``LATEST`` pointer only after
its files and directory are fsynced, and older checkpoints beyond ``keep`` are pruned only
after that. A crash at any moment of a save leaves the previous checkpoint committed and intact.

**Loading** verifies the manifest and every checksum before decoding anything and never
unpickles. A checkpoint that fails verification is never used: ``load`` raises
``CheckpointError`` naming the file and the problem, or with ``fallback=True`` takes the newest
older checkpoint that verifies. A ``LATEST`` pointer that names an older checkpoint than the
newest committed one, or swapped checkpoint directories, are refused the same way (with
``fallback=True``: the newest committed valid checkpoint is loaded, with a warning). Nothing is
changed by a load that fails. For checkpoints that each rank writes its shards of, and that load
into another layout or number of ranks, see ``distgrad.distributed.checkpoint``.

**Distributed.** Call ``save`` and ``load`` on every rank. Rank 0 writes (the others wait for
its status, so a failure on rank 0 raises on every rank instead of hanging them); every rank
loads and verifies the files itself, and all raise if any rank cannot load. Resuming the data
position needs the same number of ranks.

**Locking.** ``CheckpointManager`` locks its directory for the job (``DirectoryLock``, the file
``.lock`` naming the owner's host and pid): a second job gets ``DirectoryLockedError``; a lock
whose owner is gone is taken over with a logged warning.

Test hook: ``DISTGRAD_CHECKPOINT_TEST_KILL_AT=<phase>`` SIGKILLs the saving process at one of
``PHASES`` (writing the model file, files written before fsync, synced before the pointer,
pointer written before its rename, pruning)."""

from ..safetensors import CheckpointError
from .data import ResumableLoader
from .lock import DirectoryLock, DirectoryLockedError
from .manager import CheckpointManager, CheckpointState, load, save
from .store import KILL_ENV, PHASES, latest, verify

__all__ = [
    "save",
    "load",
    "CheckpointManager",
    "CheckpointState",
    "ResumableLoader",
    "DirectoryLock",
    "DirectoryLockedError",
    "CheckpointError",
    "latest",
    "verify",
    "KILL_ENV",
    "PHASES",
]
