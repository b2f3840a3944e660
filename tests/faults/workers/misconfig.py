"""Scenario 10: a job started by a launcher that is not the MPI library's own."""

from common import emit, mark_fault

import distgrad.distributed as dist

mark_fault("init")
dist.init()
emit(world_size=dist.world_size())
