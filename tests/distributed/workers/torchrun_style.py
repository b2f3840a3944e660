"""A script written for torchrun: reads LOCAL_RANK/RANK/WORLD_SIZE, calls
init_process_group, trains, destroys the process group (run under distgrad-run)."""

import os

from tiny_training import check, train

import distgrad.distributed as dist


def main():
    local_rank = int(os.environ["LOCAL_RANK"])
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    assert os.environ["MASTER_ADDR"] and int(os.environ["MASTER_PORT"]) > 0
    assert 0 <= local_rank < int(os.environ["LOCAL_WORLD_SIZE"])
    dist.init_process_group(backend="gloo")
    assert (dist.get_rank(), dist.get_world_size()) == (rank, world_size)
    losses, params = train(rank, world_size)
    check(rank, world_size, losses, params)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
