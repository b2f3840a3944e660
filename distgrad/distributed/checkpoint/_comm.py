"""The communicator a checkpoint call uses (the one place to switch to process groups)."""

from __future__ import annotations

import numpy as np

from .. import process_group as _pg
from ..communicator import Communicator
from ..groups import ProcessGroup


def communicator(process_group: ProcessGroup | Communicator | None = None) -> Communicator | None:
    """The communicator of ``process_group`` (None: the world), or None in a single process."""
    if not _pg.is_initialized():
        return None
    if process_group is None:
        comm = _pg.get_communicator()
    elif isinstance(process_group, ProcessGroup):
        comm = process_group.communicator_for(np.zeros(1))
    else:
        comm = process_group  # a communicator
    return comm if comm.world_size > 1 else None
