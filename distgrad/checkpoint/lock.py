"""``DirectoryLock``: one job at a time writes a checkpoint directory.

The lock is the file ``<directory>/.lock`` holding its owner as JSON: host, pid, the process's
start time (``/proc/<pid>/stat``, so a reused pid is not mistaken for the owner) and when it was
taken. It is created atomically (written to a temporary file, then hard-linked into place, which
fails if a lock exists), so a reader never sees a half-written owner.

Taking a held lock:

- owner alive (same host, same pid and start time): ``DirectoryLockedError`` naming host, pid
  and since when; nothing changes;
- owner gone (same host, the process no longer exists, or the pid now belongs to another
  process): the lock is stale; it is taken over, with a log message naming the old owner;
- owner on another host: its liveness cannot be checked from here, so it counts as alive (the
  error says to remove the file if that job is gone).

Works on any POSIX file system that supports hard links (NFS included); not on a
file system without them (the error says so). Released by ``release()``, the context manager,
or at interpreter exit; a process killed by a signal leaves a stale lock for the next job.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "DirectoryLock", "DirectoryLockedError", "LockOwner"]

#: The lock file's name inside the locked directory.
LOCK_NAME = ".lock"


class DirectoryLockedError(RuntimeError):
    """The directory is locked by another live job (its host and pid are in the message)."""


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _state(pid: int) -> str | None:
    """The state letter of process ``pid`` (``Z``: a zombie), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: host, pid, the process's start time (None where unknown) and when
    the lock was taken (``time.time()``)."""

    host: str
    pid: int
    start_time: str | None
    since: float

    @staticmethod
    def me() -> LockOwner:
        """This process, now."""
        pid = os.getpid()
        return LockOwner(socket.gethostname(), pid, _start_time(pid), time.time())

    def to_json(self) -> str:
        """The lock file's text."""
        return json.dumps(
            {"host": self.host, "pid": self.pid, "start_time": self.start_time, "since": self.since}
        )

    @staticmethod
    def from_json(text: str) -> LockOwner:
        """Parse a lock file's text; ValueError when it is not a lock owner."""
        try:
            record = json.loads(text)
            return LockOwner(
                str(record["host"]),
                int(record["pid"]),
                None if record.get("start_time") is None else str(record["start_time"]),
                float(record["since"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"not a lock owner record: {text[:200]!r}") from error

    def alive(self) -> bool:
        """Whether the owner may still run: True for another host (cannot be checked)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, another user's
            pass
        if _state(self.pid) in ("Z", "X"):  # ended, not yet reaped
            return False
        now = _start_time(self.pid)
        return self.start_time is None or now is None or now == self.start_time

    def __str__(self) -> str:
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on host {self.host} (since {taken})"


class DirectoryLock:
    """An exclusive lock on ``directory`` (created if missing) for this process.

    ``with DirectoryLock(path): ...`` or ``lock.acquire()`` / ``lock.release()``. ``acquire``
    raises ``DirectoryLockedError`` when a live job holds it (after giving an owner on this
    host ``wait`` seconds to end) and takes over a stale lock (with a log message); calling it
    again while held is a no-op. Released at interpreter exit too."""

    def __init__(self, directory: str | os.PathLike[str], wait: float = 5.0) -> None:
        self.directory = os.fspath(directory)
        self.wait = float(wait)
        self.path = os.path.join(self.directory, LOCK_NAME)
        self._held: LockOwner | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._held is not None

    def owner(self) -> LockOwner | None:
        """The current owner recorded in the lock file, or None when there is none."""
        try:
            with open(self.path) as f:
                return LockOwner.from_json(f.read())
        except FileNotFoundError:
            return None

    def acquire(self) -> DirectoryLock:
        """Take the lock (see the class docstring); return self."""
        if self._held is not None:
            return self
        os.makedirs(self.directory, exist_ok=True)
        me = LockOwner.me()
        for _ in range(10):  # each round either takes the lock or removes a stale one
            if self._create(me):
                self._held = me
                atexit.register(self._release_at_exit)
                return self
            try:
                owner = self.owner()
            except ValueError:  # unreadable: a lock written by something else
                raise DirectoryLockedError(
                    f"{self.path} exists but does not name an owner; if no job writes "
                    f"{self.directory!r}, remove {self.path}"
                ) from None
            if owner is None:  # released in between
                continue
            if owner.alive() and not self._ends_soon(owner):
                raise DirectoryLockedError(
                    f"checkpoint directory {self.directory!r} is locked by another job: "
                    f"{owner}. Two jobs writing one directory would overwrite each other's "
                    f"checkpoints; stop that job first, use another directory, or remove "
                    f"{self.path} if that job is gone"
                    + ("" if owner.host == me.host else " (it runs on another host)")
                )
            self._take_over(owner)
        raise DirectoryLockedError(f"could not take {self.path}: other processes keep taking it")

    def _ends_soon(self, owner: LockOwner) -> bool:
        """Wait up to ``wait`` seconds for a live owner on this host to end (the processes of
        a job that was just stopped are still exiting when it is restarted)."""
        if owner.host != socket.gethostname():
            return False
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if not owner.alive():
                return True
        return False

    def _create(self, me: LockOwner) -> bool:
        """Create the lock file with our record, atomically; False if one exists."""
        temporary = f"{self.path}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with open(temporary, "w") as f:
            f.write(me.to_json())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as error:
            raise OSError(
                error.errno,
                f"cannot create the lock {self.path} (the file system must support hard "
                f"links): {error.strerror}",
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def _take_over(self, stale: LockOwner) -> None:
        """Remove a stale lock: rename it aside (atomic: one taker wins), check that what was
        renamed is still the stale owner's lock, then delete it."""
        aside = f"{self.path}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another process took it over first
            return
        try:
            with open(aside) as f:
                renamed = LockOwner.from_json(f.read())
        except (OSError, ValueError):
            renamed = None
        if renamed != stale:  # a new owner took it in between: put its lock back
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        else:
            logger.warning(
                "checkpoint directory %r: taking over the lock of %s, which is gone "
                "(a job that ended without releasing it)",
                self.directory,
                stale,
            )
        with contextlib.suppress(OSError):
            os.unlink(aside)

    def release(self) -> None:
        """Release the lock if this object holds it (the file is removed only if it still
        names us)."""
        held, self._held = self._held, None
        if held is None:
            return
        atexit.unregister(self._release_at_exit)
        try:
            current = self.owner()
        except ValueError:
            return
        if current == held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _release_at_exit(self) -> None:
        if self._held is not None and self._held.pid == os.getpid():  # not in a forked child
            self.release()

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DirectoryLock({self.directory!r}, held={self.held})"
