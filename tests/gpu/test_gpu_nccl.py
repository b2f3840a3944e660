"""NCCL on a real GPU: every collective with one rank (in this process, over the local
communicator), the automatic choice of NCCL for GPU tensors, stream ordering, the GPU
timeline DataParallel reports; then MPI jobs: two ranks sharing the GPU (host staging, since
NCCL refuses two ranks on one GPU), and with two GPUs the same over NCCL, for the tensor
collectives and for DataParallel."""

import numpy as np
import pytest

import distgrad as dg
import distgrad.distributed as dist
from distgrad.backend import cupy_or_none
from distgrad.distributed import LocalCommunicator, ReduceOp
from distgrad.distributed import nccl as nc
from distgrad.distributed import process_group as pg

from .gpu_helpers import requires_2_gpus, requires_mpi, run_gpu_job

pytestmark = pytest.mark.gpu


NCCL_PROBLEM = nc.local_nccl_problem({})
needs_nccl = pytest.mark.skipif(
    not dg.cuda.is_available() or NCCL_PROBLEM is not None,
    reason=f"NCCL is not usable here: {NCCL_PROBLEM}",
)


@pytest.fixture
def comm():
    return nc.NCCLCommunicator(LocalCommunicator(timeout=60), 0)


def cp():
    return cupy_or_none()


@needs_nccl
@pytest.mark.parametrize(
    "dtype, ops",
    [
        ("float32", "SUM AVG MAX MIN PRODUCT"),
        ("float16", "SUM AVG"),
        ("float64", "SUM AVG"),
        ("int64", "SUM MAX MIN"),
        ("int32", "SUM"),
        ("uint8", "MAX"),
        ("bool", "SUM PRODUCT"),
        ("complex64", "SUM AVG"),
    ],
)
def test_allreduce_one_rank(comm, dtype, ops):
    values = np.arange(1, 7).reshape(2, 3).astype(dtype)
    for name in ops.split():
        x = cp().asarray(values)
        comm.allreduce(x, getattr(ReduceOp, name), async_op=False)
        np.testing.assert_array_equal(cp().asnumpy(x), values)
    assert comm.seq == len(ops.split()) and comm.failure is None


@needs_nccl
def test_every_collective_one_rank(comm):
    xp = cp()
    a = xp.arange(12, dtype=xp.float32).reshape(3, 4)
    column = a[:, 1]
    comm.allreduce(column, ReduceOp.SUM, async_op=False)  # staged and written back
    np.testing.assert_array_equal(xp.asnumpy(a), np.arange(12).reshape(3, 4))
    comm.broadcast(a, 0, async_op=False)
    out = xp.zeros((1, 3, 4), xp.float32)
    comm.allgather(a, out, async_op=False)
    np.testing.assert_array_equal(xp.asnumpy(out[0]), xp.asnumpy(a))
    rs = xp.zeros(12, xp.float32)
    comm.reduce_scatter(a.reshape(-1), rs, ReduceOp.AVG, async_op=False)
    np.testing.assert_array_equal(xp.asnumpy(rs), np.arange(12))
    comm.reduce(a, 0, ReduceOp.MAX, async_op=False)
    g = xp.zeros((1, 12), xp.float32)
    comm.gather(a, g, 0, async_op=False)
    s = xp.zeros(12, xp.float32)
    comm.scatter(g, s, 0, async_op=False)
    np.testing.assert_array_equal(xp.asnumpy(s), np.arange(12))
    work = comm.allreduce(xp.ones(1 << 24, xp.float32))  # 64 MiB, async
    assert work.wait() and work.is_completed()
    comm.native_avg = False  # the sum-then-divide path
    half = xp.full(4, 3.0, xp.float32)
    comm.allreduce(half, ReduceOp.AVG, async_op=False)
    np.testing.assert_array_equal(xp.asnumpy(half), 3.0)


@needs_nccl
def test_the_comm_stream_waits_for_the_compute_stream(comm):
    xp = cp()
    for _ in range(5):
        x = xp.zeros(1 << 22, xp.float32)
        for _ in range(20):  # queue work on the compute stream that the collective must see
            x += 1
        comm.allreduce(x, ReduceOp.SUM).wait()
        assert float(x[-1]) == 20.0


@needs_nccl
def test_tensor_collectives_choose_nccl_for_gpu_tensors(monkeypatch):
    monkeypatch.setattr(pg, "_world", pg._World(LocalCommunicator(), 0, 1))
    t = dg.ones(3, device="cuda")
    dist.all_reduce(t)
    assert isinstance(pg._world.gpu_comm, nc.NCCLCommunicator)
    assert pg.communicator_for(np.zeros(1)) is pg._world.comm
    monkeypatch.setattr(pg, "_world", pg._World(LocalCommunicator(), 0, 1))
    monkeypatch.setenv("DISTGRAD_NCCL", "0")
    with pytest.warns(RuntimeWarning, match="host staging instead of NCCL"):
        dist.all_reduce(t)
    assert pg._world.gpu_comm is pg._world.comm
    assert t.tolist() == [1.0, 1.0, 1.0]


@needs_nccl
def test_overlap_timeline_on_the_gpu(comm):
    xp = cp()
    x = xp.ones(1 << 24, xp.float32)
    timeline = nc.OverlapTimeline.start(comm, x)
    works = []
    for _ in range(3):
        timeline.before_launch()
        works.append(comm.allreduce(x))
        timeline.after_launch()
    x2 = x * 2  # "backward" still running
    timeline.backward_ended()
    for w in works:
        w.wait()
    communication, overlap = timeline.spans()
    assert 0 < communication < 10 and 0 <= overlap <= communication
    del x2


@requires_mpi
@pytest.mark.multiprocess
def test_two_ranks_sharing_the_gpu_use_host_staging():
    proc = run_gpu_job(2, "collectives_gpu.py", env={"CUDA_VISIBLE_DEVICES": "0"})
    assert proc.stdout.count("OK mpi") == 2, proc.stdout
    assert "both use GPU" in proc.stderr or "host staging" in proc.stderr


@requires_mpi
@pytest.mark.multiprocess
def test_data_parallel_on_a_shared_gpu():
    proc = run_gpu_job(2, "dp_gpu.py", env={"CUDA_VISIBLE_DEVICES": "0"})
    assert proc.stdout.count("OK mpi") == 2, proc.stdout


@requires_mpi
@pytest.mark.multiprocess
@requires_2_gpus
@needs_nccl
def test_two_ranks_over_nccl():
    proc = run_gpu_job(2, "collectives_gpu.py")
    assert proc.stdout.count("OK nccl") == 2, proc.stdout


@requires_mpi
@pytest.mark.multiprocess
@requires_2_gpus
@needs_nccl
def test_data_parallel_over_nccl():
    proc = run_gpu_job(2, "dp_gpu.py")
    assert proc.stdout.count("OK nccl") == 2, proc.stdout
