"""MPICH's node-wide shared-memory file (``/dev/shm/mpich_shm_*``), unlinked early.

MPICH creates it in MPI_Init and unlinks it only in MPI_Finalize, so every job that ends by a
fault (a killed rank, an abort) left one per node. Once every rank of the node has mapped it
(after ``MPI_Init`` and a barrier of the node's ranks), its name is no longer needed: local rank
0 unlinks it, the mappings stay valid, and MPI_Finalize does not miss it. distgrad-run also
removes such files after a failed job (``distgrad.launcher.shm``), for jobs that fail earlier.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

#: Name prefix of MPICH's shared-memory files.
MPICH_SHM_PREFIX = "/dev/shm/mpich_shm_"


def mapped_mpich_files(maps_path: str = "/proc/self/maps") -> list[str]:
    """The MPICH shared-memory files this process has mapped and that still have a name."""
    try:
        with open(maps_path) as maps:
            lines = maps.read().splitlines()
    except OSError:  # not Linux
        return []
    found = []
    for line in lines:
        at = line.find(MPICH_SHM_PREFIX)
        if at >= 0 and not line.endswith("(deleted)") and line[at:] not in found:
            found.append(line[at:])
    return found


def unlink_mapped_mpich_files() -> list[str]:
    """Unlink :func:`mapped_mpich_files` (call it on one rank per node, once all the node's
    ranks are past MPI_Init); return the paths unlinked."""
    done = []
    for path in mapped_mpich_files():
        try:
            os.unlink(path)
            done.append(path)
        except OSError as error:
            logger.debug("could not unlink %s: %s", path, error)
    return done
