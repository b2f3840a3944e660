"""Shared-memory files of MPI jobs in ``/dev/shm``: removing those a failed job left.

MPICH's ``mpich_shm_*`` (and Open MPI's ``vader_segment.*``/``sm_segment.*``) files are
unlinked by MPI_Finalize; a job that ends by a fault leaves one per node. distgrad unlinks
MPICH's own as soon as every local rank has mapped it (``distgrad.distributed``), and
distgrad-run removes, after a failed job, such files created since the job started that no
live process has open or mapped. Only this machine's: on other hosts they stay (no remote
shell is run for this).
"""

from __future__ import annotations

import os
import time

SHM_DIR = "/dev/shm"
#: Name prefixes of the MPI libraries' shared-memory files.
MPI_SHM_PREFIXES = ("mpich_shm_", "vader_segment.", "sm_segment.")


def _in_use(directory: str) -> set[str]:
    """Paths under ``directory`` that some process has open or mapped (those we can see)."""
    used = set()
    prefix = directory.rstrip("/") + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps") as maps:
                for line in maps:
                    at = line.find(prefix)
                    if at >= 0:
                        used.add(line[at:].rstrip("\n").removesuffix(" (deleted)"))
            for fd in os.listdir(f"/proc/{entry}/fd"):
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
                if target.startswith(prefix):
                    used.add(target)
        except OSError:  # gone, or not ours to read
            continue
    return used


def _recent(since: float, directory: str) -> list[str]:
    """MPI shared-memory files in ``directory`` owned by us, created (ctime) at or after
    ``since`` (a ``time.time()``)."""
    try:
        names = [name for name in os.listdir(directory) if name.startswith(MPI_SHM_PREFIXES)]
    except OSError:
        return []
    candidates = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            info = os.stat(path)
        except OSError:
            continue
        if info.st_uid == os.getuid() and info.st_ctime >= since - 1:
            candidates.append(path)
    return candidates


def stale_segments(since: float, directory: str = SHM_DIR) -> list[str]:
    """MPI shared-memory files in ``directory`` owned by us, created (ctime) at or after
    ``since`` (a ``time.time()``), that no process has open or mapped."""
    candidates = _recent(since, directory)
    if not candidates:
        return []
    used = _in_use(directory)
    return [path for path in candidates if path not in used]


def remove_stale_segments(since: float, directory: str = SHM_DIR, wait: float = 2.0) -> list[str]:
    """Remove :func:`stale_segments`; return the paths removed. Files still mapped are looked at
    again for up to ``wait`` seconds (the killed ranks of a job that just ended are still
    exiting when mpiexec returns)."""
    deadline = time.monotonic() + wait
    stale = stale_segments(since, directory)
    while len(stale) < len(_recent(since, directory)) and time.monotonic() < deadline:
        time.sleep(0.1)
        stale = stale_segments(since, directory)
    removed = []
    for path in stale:
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed
