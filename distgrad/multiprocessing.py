"""``distgrad.multiprocessing.spawn``: ``torch.multiprocessing.spawn`` for distgrad, so
mp.spawn-style scripts run unchanged.

``spawn(fn, args, nprocs)`` starts ``nprocs`` ranks through the same machinery as
``distgrad-run -np nprocs`` (mpiexec, the per-rank wrapper, torchrun's variables, one MPI
world) and calls ``fn(rank, *args)`` in each, where ``rank`` is the process's rank (also in
``$RANK``). ``fn`` is found in each child by reference: a function of an importable module,
or of the script being run (``__main__``), which each child runs again as ``__mp_main__``
(so, as with torch, the ``spawn`` call must sit under ``if __name__ == "__main__":``).
``args`` are pickled. An uncaught exception in any rank prints its traceback tagged
``[rank N]`` and ends every rank; ``spawn`` then raises ``ProcessExitedException`` with the
job's exit status.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile

__all__ = ["spawn", "start_processes", "SpawnContext", "ProcessException", "ProcessExitedException"]


class ProcessException(Exception):
    """A spawned job failed."""


class ProcessExitedException(ProcessException):
    """The spawned job ended with a non-zero exit status (``exit_code``)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class SpawnContext:
    """The running job of ``spawn(..., join=False)``: ``join()`` waits for it."""

    def __init__(self, process: subprocess.Popen, payload: str, nprocs: int):
        self._process, self._payload, self.nprocs = process, payload, nprocs

    def pids(self) -> list:
        """The launcher's process id (the ranks are its children)."""
        return [self._process.pid]

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job (up to ``timeout`` seconds); True once every rank has finished,
        False on timeout. Raises ``ProcessExitedException`` if it failed."""
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        if os.path.exists(self._payload):
            os.unlink(self._payload)
        if code != 0:
            raise ProcessExitedException(
                f"spawn: the job of {self.nprocs} processes ended with exit status {code} "
                f"(the failing rank's traceback, tagged [rank N], is above)",
                code,
            )
        return True


def _reference(fn) -> tuple:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", "")
    if module is None or "<locals>" in name or "<lambda>" in name:
        raise ValueError(
            f"spawn: fn must be a module-level function (found by name in each process), got {fn!r}"
        )
    main = None
    if module == "__main__":
        main = getattr(sys.modules["__main__"], "__file__", None)
        if main is None:
            raise ValueError(
                "spawn: fn is defined in an interactive session; put it in a module or script"
            )
        main = os.path.abspath(main)
    return module, name, main


def start_processes(
    fn, args=(), nprocs: int = 1, join: bool = True, daemon: bool = False, start_method="spawn"
):
    """``spawn``, with ``start_method`` accepted for PyTorch compatibility (each rank is a
    fresh process started by mpiexec, as with ``"spawn"``)."""
    if not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"spawn: nprocs must be a positive int, got {nprocs!r}")
    module, name, main = _reference(fn)
    with tempfile.NamedTemporaryFile(
        "wb", prefix="distgrad-spawn-", suffix=".pkl", delete=False
    ) as f:
        pickle.dump({"module": module, "name": name, "main": main, "args": tuple(args)}, f)
    command = [
        sys.executable,
        "-m",
        "distgrad.launcher",
        "-np",
        str(nprocs),
        "--oversubscribe",
        "--",
        sys.executable,
        "-m",
        "distgrad._spawn_child",
        f.name,
    ]
    context = SpawnContext(subprocess.Popen(command), f.name, nprocs)
    if not join:
        return context
    context.join()
    return None


def spawn(
    fn, args=(), nprocs: int = 1, join: bool = True, daemon: bool = False, start_method="spawn"
):
    """Run ``fn(rank, *args)`` in ``nprocs`` new processes that form one distgrad world
    (``torch.multiprocessing.spawn``); see the module docstring. Returns None after they have
    all finished, or with ``join=False`` a ``SpawnContext`` at once."""
    return start_processes(fn, args, nprocs, join, daemon, start_method)
