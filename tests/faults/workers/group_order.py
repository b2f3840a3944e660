"""Issue 13: process groups created in a different order on different ranks (3 ranks): ranks 0
and 2 create [0, 1] then [1, 2]; rank 1 creates [1, 2] then [0, 1]. The members that meet
raise CollectiveMismatchError naming both calls; the job is taken down."""

from common import mark_fault

import distgrad.distributed as dist

dist.init_process_group()
rank = dist.get_rank()
mark_fault("group-order")
order = [[1, 2], [0, 1]] if rank == 1 else [[0, 1], [1, 2]]
groups = [dist.new_group(ranks) for ranks in order]
print(f"rank {rank} made its groups", flush=True)
