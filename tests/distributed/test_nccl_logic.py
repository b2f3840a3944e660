"""The NCCL communicator's logic, on the CPU, with cupy and cupy.cuda.nccl replaced by the
fakes of ``fake_cuda.py``: datatype/op mapping, the NCCL-or-host-staging decision, the
unique-id exchange with its error marker, stream/event ordering, buffer lifetimes, error and
deadline handling, and the routing of host arrays. The same code on a real GPU is checked by
``tests/gpu``."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from distgrad.distributed import (
    CollectiveTimeoutError,
    CommunicatorBrokenError,
    LocalCommunicator,
    ReduceOp,
)
from distgrad.distributed import nccl as nc
from distgrad.distributed import process_group as pg

from .fake_cuda import FakeCupy, FakeNccl, gpu


class FakeHost(LocalCommunicator):
    """Rank ``rank`` of ``world_size``: ``broadcast_object`` goes through a shared ``wire``
    (run rank 0 first), ``allgather_object`` returns ``peers[r]`` for the other ranks."""

    def __init__(self, rank=0, world_size=2, wire=None, peers=None):
        super().__init__(timeout=5)
        self.rank, self.world_size = rank, world_size
        self.wire = [] if wire is None else wire
        self.peers = peers or {}

    def broadcast_object(self, obj, root=0):
        if self.rank == root:
            self.wire.append(obj)
            return obj
        return self.wire[-1]

    def allgather_object(self, obj):
        return [obj if r == self.rank else self.peers.get(r, obj) for r in range(self.world_size)]


def make(world_size=2, rank=0, native_avg=True, version=21805):
    cp = FakeCupy()
    fake = FakeNccl(cp.log, version=version, native_avg=native_avg)
    host = (
        FakeHost(rank, world_size, wire=[("id", tuple(range(128)))])
        if world_size > 1
        else LocalCommunicator(timeout=5)
    )
    comm = nc.NCCLCommunicator(host, 0, cupy=cp, nccl=fake)
    cp.log.clear()
    return comm, cp, fake


# ---- datatype and operation mapping -----------------------------------------------------------
NCCL = FakeNccl([])


@pytest.mark.parametrize(
    "dtype, count, datatype",
    [
        (np.float32, 6, "NCCL_FLOAT32"),
        (np.float64, 6, "NCCL_FLOAT64"),
        (np.float16, 6, "NCCL_FLOAT16"),
        (np.int8, 6, "NCCL_INT8"),
        (np.uint8, 6, "NCCL_UINT8"),
        (np.int32, 6, "NCCL_INT32"),
        (np.uint32, 6, "NCCL_UINT32"),
        (np.int64, 6, "NCCL_INT64"),
        (np.uint64, 6, "NCCL_UINT64"),
        (np.bool_, 6, "NCCL_UINT8"),
        (np.complex64, 12, "NCCL_FLOAT32"),
        (np.complex128, 12, "NCCL_FLOAT64"),
        (np.int16, 12, "NCCL_UINT8"),  # no NCCL type: moved as bytes
    ],
)
def test_datatypes_for_data_movement(dtype, count, datatype):
    assert nc.nccl_plan(NCCL, dtype, 6) == (count, datatype, None, False)


@pytest.mark.parametrize(
    "dtype, op, expected",
    [
        (np.float32, ReduceOp.SUM, "NCCL_SUM"),
        (np.float32, ReduceOp.PRODUCT, "NCCL_PROD"),
        (np.int64, ReduceOp.MAX, "NCCL_MAX"),
        (np.int32, ReduceOp.MIN, "NCCL_MIN"),
        (np.bool_, ReduceOp.SUM, "NCCL_MAX"),
        (np.bool_, ReduceOp.MAX, "NCCL_MAX"),  # or
        (np.bool_, ReduceOp.PRODUCT, "NCCL_MIN"),
        (np.bool_, ReduceOp.MIN, "NCCL_MIN"),  # and
        (np.complex64, ReduceOp.SUM, "NCCL_SUM"),
    ],
)
def test_reduction_ops(dtype, op, expected):
    plan = nc.nccl_plan(NCCL, dtype, 4, op)
    assert plan.op == expected and not plan.divide


def test_average_uses_ncclavg_only_where_available():
    assert nc.nccl_plan(NCCL, np.float32, 4, ReduceOp.AVG, native_avg=True)[2:] == (
        "NCCL_AVG",
        False,
    )
    assert nc.nccl_plan(NCCL, np.float32, 4, ReduceOp.AVG, native_avg=False)[2:] == (
        "NCCL_SUM",
        True,
    )
    assert not make(version=20903)[0].native_avg  # NCCL 2.9: no ncclAvg
    assert not make(native_avg=False)[0].native_avg  # a cupy without NCCL_AVG
    assert make(version=21000)[0].native_avg


@pytest.mark.parametrize(
    "dtype, op, message",
    [
        (np.int16, ReduceOp.SUM, "NCCL cannot reduce int16 arrays; cast them"),
        (np.int64, ReduceOp.AVG, "AVG needs a floating point"),
        (np.complex64, ReduceOp.PRODUCT, "cannot multiply complex"),
        (np.complex64, ReduceOp.MAX, "not defined for complex"),
    ],
)
def test_reductions_nccl_cannot_do(dtype, op, message):
    with pytest.raises(TypeError, match=message):
        nc.nccl_plan(NCCL, dtype, 4, op)


# ---- NCCL or host staging ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "false", "off", " NO "])
def test_nccl_turned_off_by_environment(value):
    problem = nc.local_nccl_problem({"DISTGRAD_NCCL": value}, lambda: NCCL)
    assert problem.startswith("NCCL is turned off (DISTGRAD_NCCL=")


def test_local_problems():
    assert nc.local_nccl_problem({}, lambda: NCCL) is None
    assert nc.local_nccl_problem({"DISTGRAD_NCCL": "1"}, lambda: NCCL) is None

    def missing():
        raise ImportError("libnccl.so.2: cannot open shared object file")

    assert "cannot be imported (ImportError: libnccl.so.2" in nc.local_nccl_problem({}, missing)

    class NoNccl:
        available = False

    assert nc.local_nccl_problem({}, NoNccl) == "cupy was built without NCCL"


def test_shared_decision():
    ok = [(None, ("n1", "gpu-a")), (None, ("n1", "gpu-b")), (None, ("n2", "gpu-a"))]
    assert nc.shared_nccl_problem(ok) is None
    off = ok[:2] + [("NCCL is turned off", ("n2", "gpu-a"))]
    assert nc.shared_nccl_problem(off) == "rank 2: NCCL is turned off"
    shared = ok + [(None, ("n1", "gpu-b"))]
    assert nc.shared_nccl_problem(shared) == (
        "ranks 1 and 3 both use GPU gpu-b on n1, and NCCL needs one GPU per rank"
    )


def test_gpu_communicator_falls_back_to_host_staging_with_a_warning():
    cp = FakeCupy()
    fake = FakeNccl(cp.log)
    host = FakeHost(0, 2, peers={1: (None, ("elsewhere", "0000:01:00.0"))})
    with pytest.warns(
        RuntimeWarning, match="host staging instead of NCCL: rank 0: NCCL is turned off"
    ):
        assert (
            nc.gpu_communicator(
                host, 0, cupy=cp, environ={"DISTGRAD_NCCL": "0"}, import_nccl=lambda: fake
            )
            is host
        )
    import socket

    here = socket.gethostname()
    host.peers = {1: (None, (here, "0000:01:00.0"))}  # rank 1 drives the same GPU
    with pytest.warns(RuntimeWarning, match="ranks 0 and 1 both use GPU 0000:01:00.0"):
        assert nc.gpu_communicator(host, 0, cupy=cp, environ={}, import_nccl=lambda: fake) is host
    assert not fake.comms  # no NCCL communicator was created
    quiet = FakeHost(1, 2, wire=[("id", (1,) * 128)], peers={0: ("no NCCL", ("x", "y"))})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only rank 0 warns
        assert nc.gpu_communicator(quiet, 0, cupy=cp, environ={}, import_nccl=lambda: fake) is quiet


def test_gpu_communicator_uses_nccl_when_every_rank_can():
    cp = FakeCupy()
    fake = FakeNccl(cp.log)
    host = FakeHost(0, 2, peers={1: (None, ("other-node", "0000:01:00.0"))})
    comm = nc.gpu_communicator(host, 0, cupy=cp, environ={}, import_nccl=lambda: fake)
    assert isinstance(comm, nc.NCCLCommunicator) and comm.host is host
    assert (comm.rank, comm.world_size) == (0, 2)
    (nccl_comm,) = fake.comms
    assert (nccl_comm.world_size, nccl_comm.rank) == (2, 0)
    assert comm.stream.non_blocking  # does not serialise with the legacy default stream


def test_without_cupy_gpu_arrays_go_to_the_host_communicator(monkeypatch):
    monkeypatch.setattr(pg, "_world", pg._World(LocalCommunicator(), 0, 1))
    monkeypatch.setattr(nc, "cupy_or_none", lambda: None)
    world = pg._world.comm
    assert pg.communicator_for(np.zeros(2)) is world
    assert pg.communicator_for(None) is world
    not_numpy = SimpleNamespace(device=SimpleNamespace(id=0))
    assert pg.communicator_for(not_numpy) is world  # no cupy: host staging
    assert pg._world.gpu_comm is world


# ---- the unique id, and rank 0's failure ------------------------------------------------------
def test_rank0_broadcasts_its_unique_id():
    cp, wire = FakeCupy(), []
    fakes = [FakeNccl(cp.log) for _ in range(2)]
    comms = [nc.NCCLCommunicator(FakeHost(r, 2, wire), 0, cupy=cp, nccl=fakes[r]) for r in range(2)]
    assert wire == [("id", tuple(range(128)))]
    assert [f.comms[0].unique_id for f in fakes] == [tuple(range(128))] * 2
    assert [c.rank for c in comms] == [0, 1]


def test_rank0_failure_raises_on_every_rank_instead_of_stranding_them():
    cp, wire = FakeCupy(), []
    broken = FakeNccl(cp.log, fail_unique_id="NCCL_ERROR_SYSTEM_ERROR: no socket")
    for rank in (0, 1):  # rank 1 reads what rank 0 sent
        with pytest.raises(
            nc.NCCLError,
            match=rf"\[rank {rank}\] cannot create the NCCL "
            r"communicator: rank 0 could not make NCCL's "
            r"unique id \(RuntimeError: NCCL_ERROR_SYSTEM",
        ):
            nc.NCCLCommunicator(FakeHost(rank, 2, wire), 0, cupy=cp, nccl=broken)
    assert wire == [("error", "RuntimeError: NCCL_ERROR_SYSTEM_ERROR: no socket")]
    assert not broken.comms


# ---- collectives --------------------------------------------------------------------------------
def test_allreduce_orders_the_comm_stream_after_the_compute_stream():
    comm, cp, fake = make()
    x = gpu([1.0, 2.0, 3.0], np.float32)
    ptr = x.data.ptr
    comm.allreduce(x, ReduceOp.SUM, async_op=False)
    np.testing.assert_array_equal(x, [2.0, 4.0, 6.0])  # two ranks with the same data
    ready, done = "event1", "event2"
    assert cp.log == [
        ("record", ready, 0),  # on the compute stream (ptr 0)
        ("wait", 777, ready),  # the communicator's stream waits for it
        ("allReduce", ptr, ptr, 3, "NCCL_FLOAT32", "NCCL_SUM", 777),
        ("record", done, 777),
    ]  # completion, on the communicator's stream
    assert comm.seq == 1


def test_average_without_ncclavg_divides_on_the_comm_stream():
    comm, cp, _ = make(native_avg=False)
    x = gpu([2.0, 4.0], np.float64)
    comm.allreduce(x, ReduceOp.AVG, async_op=False)
    np.testing.assert_array_equal(x, [2.0, 4.0])  # sum over 2 equal ranks, halved
    kinds = [entry[0] for entry in cp.log]
    assert kinds == ["record", "wait", "allReduce", "enter stream", "exit stream", "record"]
    comm, cp, _ = make(native_avg=True)
    comm.allreduce(x, ReduceOp.AVG, async_op=False)
    assert cp.log[2][5] == "NCCL_AVG" and "enter stream" not in [e[0] for e in cp.log]


def test_noncontiguous_arrays_are_staged_and_written_back():
    comm, cp, _ = make()
    base = gpu(np.arange(12.0).reshape(3, 4), np.float32)
    view = base[:, 1]
    work = comm.allreduce(view, ReduceOp.SUM)
    assert work.wait()
    np.testing.assert_array_equal(base[:, 1], [2.0, 10.0, 18.0])
    np.testing.assert_array_equal(base[:, 0], [0.0, 4.0, 8.0])  # untouched
    staged = cp.log[2][1]
    assert staged != view.data.ptr


def test_buffers_stay_alive_until_their_completion_event():
    comm, cp, _ = make()
    cp.cuda.complete = False
    x = gpu(np.ones(4), np.float32)
    work = comm.allreduce(x[::2], ReduceOp.SUM)  # a staged copy only the communicator holds
    assert not work.is_completed()
    ((event, (array, staged)),) = comm._alive
    assert np.shares_memory(array, x) and not np.shares_memory(staged, x)
    cp.cuda.complete = True
    assert work.is_completed()
    comm.broadcast(gpu([1.0]), 0, async_op=False)  # the next collective drops finished ones
    assert len(comm._alive) == 1 and comm._alive[0][0] is not event


def test_data_movement_collectives():
    comm, cp, _ = make(world_size=2, rank=1)
    send = gpu([[1, 2], [3, 4]], np.int64)
    recv = gpu(np.zeros((2, 2, 2)), np.int64)
    comm.allgather(send, recv, async_op=False)
    np.testing.assert_array_equal(recv, [send, send])
    assert cp.log[2][:5] == ("allGather", send.data.ptr, recv.data.ptr, 4, "NCCL_INT64")

    rs_in = gpu(np.arange(6.0).reshape(2, 3), np.float32)
    rs_out = gpu(np.zeros(3), np.float32)
    comm.reduce_scatter(rs_in, rs_out, ReduceOp.AVG, async_op=False)
    np.testing.assert_array_equal(rs_out, [3.0, 4.0, 5.0])  # block of rank 1, averaged

    flags = gpu([True, False, True])
    comm.broadcast(flags, 0, async_op=False)
    assert cp.log[-2][3:5] == (3, "NCCL_UINT8")

    x = gpu([1.0, 2.0], np.float16)
    comm.reduce(x, 1, ReduceOp.SUM, async_op=False)  # this rank is the root
    np.testing.assert_array_equal(x, [2.0, 4.0])
    y = gpu([1.0, 2.0], np.float16)
    comm.reduce(y, 0, ReduceOp.SUM, async_op=False)  # not the root: unchanged
    np.testing.assert_array_equal(y, [1.0, 2.0])


def test_gather_and_scatter():
    root, cp, _ = make(world_size=2, rank=0)
    send = gpu([5.0, 6.0], np.float32)
    out = gpu(np.zeros((2, 2)), np.float32)
    root.gather(send, out, 0, async_op=False)
    np.testing.assert_array_equal(out, [[5.0, 6.0], [5.0, 6.0]])
    other, _, _ = make(world_size=2, rank=1)
    other.gather(send, None, 0, async_op=False)  # a scratch buffer on non-roots

    blocks = gpu([[1.0, 2.0], [3.0, 4.0]], np.float32)
    mine = gpu(np.zeros(2), np.float32)
    other.scatter(None, mine, 0, async_op=False)  # the fake broadcast keeps the scratch
    mine0 = gpu(np.zeros(2), np.float32)
    root.scatter(blocks, mine0, 0, async_op=False)
    np.testing.assert_array_equal(mine0, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"world_size \(2\) x 2 elements"):
        root.scatter(gpu(np.zeros(3), np.float32), mine0, 0)


def test_host_arrays_go_to_the_host_communicator():
    comm, cp, fake = make(world_size=1)
    before = comm.host.seq  # the set-up's broadcast of the unique id
    a = np.arange(3.0)
    comm.allreduce(a, ReduceOp.SUM, async_op=False)
    out = np.empty((1, 3))
    comm.allgather(a, out, async_op=False)
    assert comm.allgather_object({"x": 1}) == [{"x": 1}]
    assert comm.broadcast_object("hi") == "hi"
    assert cp.log == [] and comm.seq == 0 and comm.host.seq == before + 6


def test_arrays_must_be_on_the_communicators_gpu():
    comm, _, _ = make()
    with pytest.raises(
        TypeError, match="allgather: all arrays must be on the GPU, got a numpy.ndarray"
    ):
        comm.allgather(gpu([1.0]), np.zeros(2))
    comm.device_index = 1
    with pytest.raises(
        ValueError, match="an array is on cuda:0 but rank 0's NCCL communicator uses cuda:1"
    ):
        comm.allreduce(gpu([1.0]))
    with pytest.raises(ValueError, match="root 2 is not a rank"):
        make()[0].broadcast(gpu([1.0]), 2)


def test_nccl_error_aborts_and_names_the_collective_and_rank():
    comm, cp, fake = make(world_size=2, rank=1)
    cp.cuda.complete = False
    work = comm.allreduce(gpu([1.0, 2.0], np.float32), ReduceOp.SUM)
    fake.comms[0].async_error = "NCCL_ERROR_REMOTE_ERROR: peer 0 went away"
    with pytest.raises(
        nc.NCCLError,
        match=r"\[rank 1\] collective #1 allreduce op=SUM "
        r"\(2 x float32, 8 bytes\) on rank 1 of 2 failed in "
        r"NCCL: NCCL_ERROR_REMOTE_ERROR",
    ):
        work.wait()
    assert fake.comms[0].aborted
    assert "failed in NCCL" in comm.host.failure  # the job goes down at exit at the latest
    with pytest.raises(
        CommunicatorBrokenError, match="cannot start broadcast: this nccl communicator is broken"
    ):
        comm.broadcast(gpu([1.0]), 0)


def test_deadline_aborts_the_nccl_communicator():
    comm, cp, fake = make(world_size=2)
    cp.cuda.complete = False
    comm.timeout = 0.05
    assert comm.host.timeout == 0.05  # one deadline for both
    with pytest.raises(
        CollectiveTimeoutError,
        match=r"\[rank 0\] collective #1 broadcast "
        r"\(1 x float64, 8 bytes\) root=0",
    ):
        comm.broadcast(gpu([1.0]), 0, async_op=False)
    assert fake.comms[0].aborted and "timed out" in comm.failure
    assert "timed out" in comm.host.failure


def test_enqueue_failure_aborts_too():
    comm, cp, fake = make()

    def fail(*args):
        raise RuntimeError("NCCL_ERROR_INVALID_ARGUMENT")

    fake.comms[0].allGather = fail
    with pytest.raises(nc.NCCLError, match="allgather .* failed in NCCL: NCCL_ERROR_INVALID"):
        comm.allgather(gpu([1.0]), gpu([0.0, 0.0]))
    assert fake.comms[0].aborted


# ---- DataParallel's GPU timeline ----------------------------------------------------------------
def test_overlap_timeline_spans():
    comm, cp, _ = make()
    timeline = nc.OverlapTimeline.start(comm, gpu([0.0]))  # t0 at tick 0
    assert nc.OverlapTimeline.start(comm, np.zeros(1)) is None  # host buckets
    assert nc.OverlapTimeline.start(LocalCommunicator(), gpu([0.0])) is None  # no comm stream
    timeline.before_launch()  # tick 1: first bucket ready
    timeline.after_launch()  # tick 2: its reduction done
    timeline.before_launch()  # tick 3
    timeline.backward_ended()  # tick 4
    timeline.after_launch()  # tick 5
    assert timeline.spans() == (4.0, 3.0)  # communication 1..5, of which 1..4 in backward


def test_each_rank_on_a_node_takes_its_own_gpu(monkeypatch):
    used = []

    class Device:
        def __init__(self, index):
            self.index = index

        def use(self):
            used.append(self.index)

    cuda = SimpleNamespace(Device=Device, runtime=SimpleNamespace(getDeviceCount=lambda: 2))
    monkeypatch.setattr(nc, "cupy_or_none", lambda: SimpleNamespace(cuda=cuda))
    monkeypatch.setattr(nc.importlib.util, "find_spec", lambda name: object())
    assert [nc.select_local_gpu(r, 4) for r in range(4)] == [0, 1, 0, 1] == used
    assert nc.select_local_gpu(0, 1) is None  # one rank per node: its choice is left alone
    monkeypatch.setattr(nc, "cupy_or_none", lambda: None)
    assert nc.select_local_gpu(1, 2) is None
