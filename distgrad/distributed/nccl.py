"""``NCCLCommunicator``: collectives on cupy arrays with NCCL (``cupy.cuda.nccl``), and the
choice, made by all ranks together, between it and host-staged MPI for GPU arrays.

Choosing (``gpu_communicator``, collective over the host communicator): every rank reports
whether it can use NCCL (``DISTGRAD_NCCL=0`` turns it off; cupy must have been built with
NCCL) and which GPU it drives (host name and PCI bus id). NCCL is used only if every rank can
and no two ranks drive the same GPU (NCCL refuses that); otherwise GPU arrays go through the
host communicator, whose MPI path stages them through host memory, and rank 0 warns why.
Every rank reaches the same decision, so no rank waits in NCCL for ranks that chose MPI.

Set-up: rank 0 makes NCCL's unique id and broadcasts it over the host communicator, or an
error marker when making it failed, so a failure on rank 0 raises on every rank instead of
leaving the others waiting in ``ncclCommInitRank``. The GPU (the array's; ``init()`` has made
the local rank's GPU current) is chosen before the NCCL communicator is created.

A collective records an event on the current (compute) stream, makes the communicator's own
non-blocking stream wait for it, enqueues the NCCL call there and records a completion event.
``Work.test()`` queries that event and NCCL's asynchronous error state. The arrays involved
stay referenced until their completion event has fired, so cupy's memory pool cannot give
their memory to new arrays while NCCL still uses it. An NCCL error or a missed deadline aborts
the NCCL communicator (``ncclCommAbort``) and raises an error naming the collective and the
rank; the host communicator is marked broken too, so the job is taken down (at the uncaught
exception, or at exit) instead of hanging. Host (numpy) arrays are handed to the host
communicator, so this one object serves a model whatever its arrays are.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np

from ..backend import cupy_or_none
from .communicator import (
    Array,
    Callback,
    CollectiveInfo,
    Communicator,
    ReduceOp,
    Test,
    Work,
    _sizes,
)

__all__ = [
    "NCCLCommunicator",
    "NCCLError",
    "gpu_communicator",
    "select_local_gpu",
    "nccl_plan",
    "local_nccl_problem",
    "shared_nccl_problem",
    "OverlapTimeline",
]

# A cupy.ndarray: cupy has no type information, so these are Any to the checker.
GpuArray = Any

NCCL_ENV = "DISTGRAD_NCCL"
_AVG_VERSION = 21000  # ncclAvg exists from NCCL 2.10.0 (version code 2*10000 + 10*100)

# (numpy kind, itemsize) -> NCCL datatype name
_TYPES = {
    ("i", 1): "NCCL_INT8",
    ("u", 1): "NCCL_UINT8",
    ("b", 1): "NCCL_UINT8",
    ("i", 4): "NCCL_INT32",
    ("u", 4): "NCCL_UINT32",
    ("i", 8): "NCCL_INT64",
    ("u", 8): "NCCL_UINT64",
    ("f", 2): "NCCL_FLOAT16",
    ("f", 4): "NCCL_FLOAT32",
    ("f", 8): "NCCL_FLOAT64",
}
_OPS: dict[str, str] = {
    "SUM": "NCCL_SUM",
    "AVG": "NCCL_SUM",
    "PRODUCT": "NCCL_PROD",
    "MAX": "NCCL_MAX",
    "MIN": "NCCL_MIN",
}
# bools are reduced as uint8 0/1: a sum or max is a logical or, a product or min a logical and
_BOOL_OPS = {"SUM": "NCCL_MAX", "MAX": "NCCL_MAX", "PRODUCT": "NCCL_MIN", "MIN": "NCCL_MIN"}


class NCCLError(RuntimeError):
    """An NCCL collective failed; the NCCL communicator has been aborted."""


class Plan(NamedTuple):
    """How NCCL moves an array: ``count`` elements of ``datatype``, reduced with ``op`` (None
    for data movement); ``divide``: divide by the world size afterwards (AVG without
    ncclAvg)."""

    count: int  # type: ignore[assignment]  # the field shadows tuple.count, as intended
    datatype: int
    op: int | None
    divide: bool


def nccl_plan(
    nccl: Any,
    dtype: np.dtype | type | str,
    size: int,
    op: ReduceOp | None = None,
    native_avg: bool = False,
) -> Plan:
    """The ``Plan`` for ``size`` elements of ``dtype`` (constants from the ``nccl`` module).
    Complex arrays go as twice as many reals; types NCCL lacks are moved as bytes and cannot
    be reduced."""
    dtype = np.dtype(dtype)
    if op is not None:
        Communicator._check_reduce(op, dtype)
    kind = dtype.kind
    if kind == "c":
        kind, itemsize, size = "f", dtype.itemsize // 2, 2 * size
        if op is ReduceOp.PRODUCT:
            raise TypeError(
                f"NCCL cannot multiply complex arrays ({dtype}) element-wise; "
                f"use SUM/AVG or reduce on the CPU"
            )
    else:
        itemsize = dtype.itemsize
    name = _TYPES.get((kind, itemsize))
    if name is None or not hasattr(nccl, name):
        if op is not None:
            raise TypeError(
                f"NCCL cannot reduce {dtype} arrays; cast them to one of int8, "
                f"uint8, int32, uint32, int64, uint64, float16, float32, float64"
            )
        return Plan(size * itemsize, nccl.NCCL_UINT8, None, False)
    if op is None:
        return Plan(size, getattr(nccl, name), None, False)
    if kind == "b":
        return Plan(size, getattr(nccl, name), getattr(nccl, _BOOL_OPS[op.name]), False)
    if op is ReduceOp.AVG and native_avg:
        return Plan(size, getattr(nccl, name), nccl.NCCL_AVG, False)
    return Plan(size, getattr(nccl, name), getattr(nccl, _OPS[op.name]), op is ReduceOp.AVG)


# ---- choosing NCCL or host staging ------------------------------------------------------------
def _import_nccl() -> Any:
    from cupy.cuda import nccl

    return nccl


def local_nccl_problem(
    environ: Mapping[str, str] | None = None, import_nccl: Callable[[], Any] = _import_nccl
) -> str | None:
    """Why this rank cannot use NCCL (None if it can)."""
    environ = os.environ if environ is None else environ
    if environ.get(NCCL_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"NCCL is turned off ({NCCL_ENV}={environ[NCCL_ENV]})"
    try:
        nccl = import_nccl()
    except Exception as exc:
        return f"cupy.cuda.nccl cannot be imported ({type(exc).__name__}: {exc})"
    if not getattr(nccl, "available", False):
        return "cupy was built without NCCL"
    return None


def shared_nccl_problem(reports: list[tuple[str | None, tuple[str, str]]]) -> str | None:
    """Why the ranks cannot use NCCL together (None if they can), from every rank's
    ``(problem, (host name, GPU id))``, indexed by rank."""
    for rank, (problem, _) in enumerate(reports):
        if problem:
            return f"rank {rank}: {problem}"
    first_user: dict[tuple[str, str], int] = {}
    for rank, (_, gpu) in enumerate(reports):
        if gpu in first_user:
            return (
                f"ranks {first_user[gpu]} and {rank} both use GPU {gpu[1]} on {gpu[0]}, "
                f"and NCCL needs one GPU per rank"
            )
        first_user[gpu] = rank
    return None


def _gpu_id(cp: Any, index: int) -> str:
    """A name of GPU ``index`` that is the same in every process (its PCI bus id)."""
    try:
        return cp.cuda.Device(index).pci_bus_id
    except Exception:
        return f"cuda:{index}"


def gpu_communicator(
    host: Communicator,
    device_index: int,
    *,
    cupy: Any = None,
    environ: Mapping[str, str] | None = None,
    import_nccl: Callable[[], Any] = _import_nccl,
) -> Communicator:
    """The communicator for GPU arrays on ``device_index`` (all ranks call this together): an
    ``NCCLCommunicator`` when every rank can use NCCL on a GPU of its own, else ``host``, which
    stages GPU arrays through host memory (rank 0 warns why)."""
    cp = cupy if cupy is not None else cupy_or_none()
    if cp is None:
        return host
    problem = local_nccl_problem(environ, import_nccl)
    reports = host.allgather_object((problem, (socket.gethostname(), _gpu_id(cp, device_index))))
    problem = shared_nccl_problem(reports)
    if problem is not None:
        if host.rank == 0:
            warnings.warn(
                f"distgrad.distributed: GPU tensors go through {host.kind} with host "
                f"staging instead of NCCL: {problem}",
                RuntimeWarning,
                stacklevel=3,
            )
        return host
    return NCCLCommunicator(host, device_index, cupy=cp, nccl=import_nccl())


def select_local_gpu(local_rank: int, local_size: int) -> int | None:
    """With several ranks on this node and cupy seeing GPUs, make GPU ``local_rank % count``
    current (so ``"cuda"`` means the rank's own GPU) and return its index; else None."""
    if local_size < 2 or importlib.util.find_spec("cupy") is None:
        return None
    cp = cupy_or_none()
    if cp is None:
        return None
    index = local_rank % cp.cuda.runtime.getDeviceCount()
    cp.cuda.Device(index).use()
    return index


def _shared_unique_id(host: Communicator, nccl: Any) -> Any:
    """Rank 0's new NCCL unique id on every rank; if rank 0 could not make one, every rank
    raises (rank 0 sends an error marker instead of the id)."""
    payload: tuple[str, Any] | None = None
    if host.rank == 0:
        try:
            payload = ("id", nccl.get_unique_id())
        except Exception as exc:
            payload = ("error", f"{type(exc).__name__}: {exc}")
    kind, value = host.broadcast_object(payload, 0)
    if kind == "error":
        raise NCCLError(
            f"[rank {host.rank}] cannot create the NCCL communicator: rank 0 could "
            f"not make NCCL's unique id ({value}). Set {NCCL_ENV}=0 to send GPU "
            f"tensors through MPI instead."
        )
    return value


# ---- the communicator -------------------------------------------------------------------------
class NCCLCommunicator(Communicator):
    """Collectives on cupy arrays of GPU ``device_index`` over NCCL; host arrays go to
    ``host`` (the MPI or local communicator the NCCL one was set up over). ``stream`` is the
    non-blocking stream the collectives run on."""

    kind = "nccl"
    device = "cuda"

    def __init__(
        self, host: Communicator, device_index: int, *, cupy: Any = None, nccl: Any = None
    ):
        self.host = host
        super().__init__(host.rank, host.world_size, host.timeout)
        self.cp = cp = cupy if cupy is not None else cupy_or_none()
        self.nccl = nccl = nccl if nccl is not None else _import_nccl()
        self.device_index = device_index
        self._device = cp.cuda.Device(device_index)
        with self._device:
            unique_id = _shared_unique_id(host, nccl)
            self.nccl_comm = nccl.NcclCommunicator(self.world_size, unique_id, self.rank)
            self.stream = cp.cuda.Stream(non_blocking=True)
        self.native_avg = hasattr(nccl, "NCCL_AVG") and nccl.get_version() >= _AVG_VERSION
        # (completion event, arrays to keep alive until it fires)
        self._alive: list[tuple[Any, tuple[Array | None, ...]]] = []

    # The deadline is the host communicator's (set_timeout/init(timeout=) change both).
    @property
    def timeout(self) -> float:
        return self.host.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self.host.timeout = float(value)

    # ---- helpers ------------------------------------------------------------------------------
    def _plan(self, array: Array, op: ReduceOp | None = None) -> Plan:
        return nccl_plan(self.nccl, array.dtype, array.size, op, self.native_avg)

    def _check(self, op: str, *arrays: Array | None, root: int | None = None) -> None:
        self._check_root(op, root)
        for a in arrays:
            if a is None:
                continue
            if not isinstance(a, self.cp.ndarray):
                raise TypeError(
                    f"{op}: all arrays must be on the GPU, got a "
                    f"{type(a).__module__}.{type(a).__name__}"
                )
            if a.device.id != self.device_index:
                raise ValueError(
                    f"{op}: an array is on cuda:{a.device.id} but rank "
                    f"{self.rank}'s NCCL communicator uses cuda:"
                    f"{self.device_index}; move it there first"
                )

    def _contiguous(self, array: GpuArray, write: bool) -> tuple[GpuArray, Callback | None]:
        """``(buffer, writeback)``: ``array`` itself if C-contiguous, else a contiguous copy
        (made on the compute stream, before the collective's start event) and, if ``write``,
        a callback copying the result back once the collective has completed."""
        if array.flags.c_contiguous:
            return array, None
        buf = self.cp.ascontiguousarray(array)
        if not write:
            return buf, None

        def writeback() -> None:
            with self._device:
                array[...] = buf.reshape(array.shape)

        return buf, writeback

    def _divide(self, buf: GpuArray, plan: Plan) -> None:
        """AVG without ncclAvg: divide on the communicator's stream, after the sum."""
        if plan.divide:
            with self.stream:
                buf /= self.world_size

    def _start(
        self,
        op: str,
        array: Array,
        enqueue: Callable[[int], None],
        keep: tuple[Array | None, ...],
        async_op: bool,
        root: int | None = None,
        reduce_op: ReduceOp | None = None,
        then: tuple[Callback | None, ...] = (),
    ) -> Work | None:
        """Order the communicator's stream after the compute stream, ``enqueue(stream_ptr)``
        the NCCL call(s), record the completion event and hand over to ``_issue``."""
        cp, stream = self.cp, self.stream
        seq = self.seq + 1  # the number _issue gives this collective

        def info() -> CollectiveInfo:
            return CollectiveInfo(
                op, seq, self.rank, self.world_size, *_sizes(array), root=root, reduce_op=reduce_op
            )

        ready = cp.cuda.Event(disable_timing=True)
        ready.record(cp.cuda.get_current_stream())  # the compute stream wrote the inputs
        stream.wait_event(ready)
        try:
            enqueue(stream.ptr)
        except Exception as exc:
            self._broken(info(), exc)
        done = cp.cuda.Event(disable_timing=True)
        done.record(stream)
        self._alive = [entry for entry in self._alive if not entry[0].done]
        self._alive.append((done, keep))
        return self._issue(self._tester(done, info), async_op, op, array, root, reduce_op, then)

    def _tester(self, done: Any, info: Callable[[], CollectiveInfo]) -> Test:
        def test() -> bool:
            if done.done:
                return True
            try:
                self.nccl_comm.check_async_error()
            except Exception as exc:
                self._broken(info(), exc)
            return False

        return test

    def _abort_nccl(self, why: str) -> None:
        """Abort the NCCL communicator (frees GPU kernels stuck in it) and mark the host
        communicator broken too, so the job goes down rather than hanging at exit."""
        try:
            self.nccl_comm.abort()
        except Exception:
            pass
        if self.host.failure is None:
            self.host.failure = f"the NCCL communicator failed ({why})"

    def _broken(self, info: CollectiveInfo, exc: Exception) -> NoReturn:
        why = f"{info.describe()} failed in NCCL: {exc}"
        if self.failure is None:
            self.failure = why
        self._abort_nccl(why)
        raise NCCLError(
            f"[rank {self.rank}] {why}. The NCCL communicator has been aborted; "
            f"the job will be taken down."
        ) from exc

    def _fail(self, info: CollectiveInfo, waited: float) -> NoReturn:
        self._abort_nccl(f"{info.describe()} timed out")
        super()._fail(info, waited)

    # ---- collectives --------------------------------------------------------------------------
    def allreduce(
        self, array: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        if not isinstance(array, self.cp.ndarray):
            return self.host.allreduce(array, op, async_op)
        self._check("allreduce", array)
        plan = self._plan(array, op)
        with self._device:
            buf, writeback = self._contiguous(array, write=True)

            def enqueue(stream_ptr: int) -> None:
                ptr = buf.data.ptr
                self.nccl_comm.allReduce(ptr, ptr, plan.count, plan.datatype, plan.op, stream_ptr)
                self._divide(buf, plan)

            return self._start(
                "allreduce", array, enqueue, (array, buf), async_op, reduce_op=op, then=(writeback,)
            )

    def broadcast(self, array: Array, root: int, async_op: bool = True) -> Work | None:
        if not isinstance(array, self.cp.ndarray):
            return self.host.broadcast(array, root, async_op)
        self._check("broadcast", array, root=root)
        plan = self._plan(array)
        with self._device:
            buf, writeback = self._contiguous(array, write=self.rank != root)

            def enqueue(stream_ptr: int) -> None:
                ptr = buf.data.ptr
                self.nccl_comm.broadcast(ptr, ptr, plan.count, plan.datatype, root, stream_ptr)

            return self._start(
                "broadcast", array, enqueue, (array, buf), async_op, root, then=(writeback,)
            )

    def reduce(
        self, array: Array, root: int, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        if not isinstance(array, self.cp.ndarray):
            return self.host.reduce(array, root, op, async_op)
        self._check("reduce", array, root=root)
        plan = self._plan(array, op)
        is_root = self.rank == root
        with self._device:
            buf, writeback = self._contiguous(array, write=is_root)

            def enqueue(stream_ptr: int) -> None:
                ptr = buf.data.ptr
                self.nccl_comm.reduce(
                    ptr, ptr, plan.count, plan.datatype, plan.op, root, stream_ptr
                )
                if is_root:
                    self._divide(buf, plan)

            return self._start(
                "reduce", array, enqueue, (array, buf), async_op, root, op, then=(writeback,)
            )

    def allgather(self, send: Array, recv: Array, async_op: bool = True) -> Work | None:
        if not isinstance(send, self.cp.ndarray):
            return self.host.allgather(send, recv, async_op)
        return self._allgather("allgather", send, recv, None, async_op)

    def _allgather(
        self,
        op: str,
        send: Array,
        recv: Array,
        root: int | None,
        async_op: bool,
        then: tuple[Callback | None, ...] = (),
    ) -> Work | None:
        self._check(op, send, recv, root=root)
        self._check_blocks(op, send, recv)
        plan = self._plan(send)
        with self._device:
            sbuf, _ = self._contiguous(send, write=False)
            rbuf, writeback = self._contiguous(recv, write=True)

            def enqueue(stream_ptr: int) -> None:
                self.nccl_comm.allGather(
                    sbuf.data.ptr, rbuf.data.ptr, plan.count, plan.datatype, stream_ptr
                )

            return self._start(
                op, send, enqueue, (send, recv, sbuf, rbuf), async_op, root, then=(writeback, *then)
            )

    def reduce_scatter(
        self, send: Array, recv: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        if not isinstance(send, self.cp.ndarray):
            return self.host.reduce_scatter(send, recv, op, async_op)
        self._check("reduce_scatter", send, recv)
        self._check_blocks("reduce_scatter", recv, send)
        plan = self._plan(recv, op)
        with self._device:
            sbuf, _ = self._contiguous(send, write=False)
            rbuf, writeback = self._contiguous(recv, write=True)

            def enqueue(stream_ptr: int) -> None:
                self.nccl_comm.reduceScatter(
                    sbuf.data.ptr, rbuf.data.ptr, plan.count, plan.datatype, plan.op, stream_ptr
                )
                self._divide(rbuf, plan)

            return self._start(
                "reduce_scatter",
                send,
                enqueue,
                (send, recv, sbuf, rbuf),
                async_op,
                reduce_op=op,
                then=(writeback,),
            )

    def gather(
        self, send: Array, recv: Array | None, root: int, async_op: bool = True
    ) -> Work | None:
        """An allgather into ``root``'s ``recv`` (a scratch buffer elsewhere): simple, at
        world_size times the traffic of a real gather."""
        if not isinstance(send, self.cp.ndarray):
            return self.host.gather(send, recv, root, async_op)
        if self.rank != root:
            with self._device:
                recv = self.cp.empty(send.size * self.world_size, send.dtype)
        full = self._root_buffer("gather", "recv", recv)
        return self._allgather("gather", send, full, root, async_op)

    def scatter(
        self, send: Array | None, recv: Array, root: int, async_op: bool = True
    ) -> Work | None:
        """A broadcast of ``root``'s rank-major ``send`` from which each rank copies its
        block (on the communicator's stream): world_size times a real scatter's traffic."""
        if not isinstance(recv, self.cp.ndarray):
            return self.host.scatter(send, recv, root, async_op)
        is_root = self.rank == root
        self._check("scatter", send if is_root else None, recv, root=root)
        if is_root:
            send = self._root_buffer("scatter", "send", send)
            self._check_blocks("scatter", recv, send)
        plan = nccl_plan(self.nccl, recv.dtype, recv.size * self.world_size)
        with self._device:
            full = (
                self._contiguous(send, write=False)[0]
                if send is not None and is_root
                else self.cp.empty(recv.size * self.world_size, recv.dtype)
            )

            def enqueue(stream_ptr: int) -> None:
                ptr = full.data.ptr
                self.nccl_comm.broadcast(ptr, ptr, plan.count, plan.datatype, root, stream_ptr)
                with self.stream:
                    recv[...] = full.reshape(self.world_size, -1)[self.rank].reshape(recv.shape)

            return self._start("scatter", recv, enqueue, (send, recv, full), async_op, root)

    def barrier(self, async_op: bool = True) -> Work | None:
        return self.host.barrier(async_op)

    def abort(self, code: int = 1) -> None:
        self._abort_nccl("aborted")
        self.host.abort(code)


# ---- DataParallel's view of the GPU timeline -------------------------------------------------
class OverlapTimeline:
    """GPU-clock times of one backward's bucket reductions: when each bucket's gradients were
    ready on the compute stream, when its reduction finished on the communicator's stream, and
    when backward's last kernel finished. Built by ``start`` only for buckets on the GPU
    reduced by a communicator with a ``stream``; None otherwise."""

    def __init__(self, cp: Any, device: Any, stream: Any):
        self.cp, self.device, self.stream = cp, device, stream
        self.ready: list[Any] = []  # cupy events
        self.done: list[Any] = []
        self.end: Any = None
        self.t0 = self._record()

    @classmethod
    def start(cls, comm: Communicator, array: Array) -> OverlapTimeline | None:
        if not isinstance(comm, NCCLCommunicator) or not isinstance(array, comm.cp.ndarray):
            return None
        return cls(comm.cp, array.device, comm.stream)

    def _record(self, stream: Any = None) -> Any:
        with self.device:
            event = self.cp.cuda.Event()
            event.record(stream if stream is not None else self.cp.cuda.get_current_stream())
        return event

    def before_launch(self) -> None:
        self.ready.append(self._record())

    def after_launch(self) -> None:
        self.done.append(self._record(self.stream))

    def backward_ended(self) -> None:
        self.end = self._record()

    def spans(self) -> tuple[float, float]:
        """``(communication_s, overlap_s)`` on the GPU clock, once every reduction has
        completed: from the first reduction's start to the last one's end, and the part of it
        before backward's last kernel finished."""
        self.end.synchronize()
        for event in self.done:
            event.synchronize()

        def seconds(event: Any) -> float:
            return self.cp.cuda.get_elapsed_time(self.t0, event) / 1000.0

        first = seconds(self.ready[0])
        last = max(seconds(e) for e in self.done)
        end = seconds(self.end)
        return last - first, max(0.0, min(end, last) - first)
