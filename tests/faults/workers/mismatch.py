"""Scenario 4: models or bucket plans that differ between ranks, at DataParallel construction
and at rebuild_buckets; each case must raise CollectiveMismatchError on every rank, and the job
goes on to the next case."""

import time

from common import Net, assert_replicas_equal, batch, emit, mark_fault

import distgrad
import distgrad.distributed as dist
import distgrad.optim as optim
from distgrad import nn

dist.init()
rank = dist.rank()
comm = dist.get_communicator()


def shape():
    return dist.DataParallel(Net(out=5 if rank == 1 else 3))


def count():
    net = Net()
    if rank == 1:
        net.more = nn.Linear(3, 2)
    return dist.DataParallel(net)


def dtype():
    net = Net()
    return dist.DataParallel(net.double() if rank == 1 else net)


def buffer():
    net = Net()
    net.register_buffer("scale", distgrad.ones(3 if rank == 0 else 4))
    return dist.DataParallel(net)


def bucket_plan():
    return dist.DataParallel(Net(), first_bucket_mb=1e-9 if rank == 1 else 1)


def rebuild():
    # a plan that changes mid-training is checked too; then a consistent rebuild trains on
    model = dist.DataParallel(Net())
    opt = optim.SGD(model.parameters(), lr=0.1)

    def train(step):
        model(batch(step, rank)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        assert_replicas_equal(model, f"rebuild step {step}")

    train(0)
    try:
        model.rebuild_buckets(first_bucket_mb=1e-9 if rank == 1 else 1)
    finally:
        model.rebuild_buckets(bucket_cap_mb=1e-9, first_bucket_mb=1e-9)
        assert len(model.buckets) == 6
        train(1)


def collective_count():
    # rank 1 synchronises through raw MPI where rank 0 uses distgrad: MPI matches the two
    # (non-blocking) barriers, but distgrad's counts now differ (the desync check, which
    # would name the raw barrier first, is left out of this one so the contract check is
    # what is tested)
    saved, comm.desync = comm.desync, None
    if rank == 0:
        dist.barrier()
    else:
        comm.comm.Ibarrier().Wait()
    comm.desync = saved
    return dist.DataParallel(Net())


for case in (shape, count, dtype, buffer, bucket_plan, rebuild, collective_count):
    mark_fault(case.__name__)
    start = time.perf_counter()
    try:
        case()
        emit(case=case.__name__, raised=False)
    except dist.CollectiveMismatchError as e:
        emit(
            case=case.__name__, raised=True, message=str(e), detection_s=time.perf_counter() - start
        )
emit(finished=True)
