"""The ``Communicator`` interface shared by the MPI (CPU) and NCCL (GPU) implementations.

A communicator takes raw arrays. Every collective is started non-blocking; with
``async_op=True`` (the default at this level) it returns a ``Work`` handle, otherwise it waits
before returning (without building a handle: the blocking path is kept short). Each collective
gets the next sequence number of its communicator; one that does not complete by its deadline
raises ``CollectiveTimeoutError`` naming the operation, its sequence number, sizes, dtype and
rank, and leaves the communicator broken (later collectives raise at once; the job is aborted
at exit instead of hanging in ``MPI_Finalize``). The communicator keeps what the hang watchdog
(``watchdog.py``) reports: ``seq`` (collectives issued), ``last_done`` (the last completed one)
and the ones pending (``in_flight``: Works by sequence number; ``blocking``: the one a blocking
call is waiting for).
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol

import numpy as np

from ..backend import is_floating
from . import traffic as _traffic

if TYPE_CHECKING:
    from ..futures import Future
    from .desync import DesyncCheck
    from .watchdog import Watchdog

__all__ = [
    "ReduceOp",
    "Work",
    "Communicator",
    "CollectiveInfo",
    "CollectiveTimeoutError",
    "CommunicatorBrokenError",
    "LocalCommunicator",
    "P2PWork",
]

DEFAULT_TIMEOUT = 1800.0
# Waiting tests the request in a busy loop and, as MPICH's own busy waits do, yields the core
# every _POLLS_BEFORE_YIELD tests (ranks sharing cores with other work, or with each other, get
# to run); after _SLEEP_AFTER seconds it sleeps a little between tests.
_POLLS_BEFORE_YIELD = 1000
_SLEEP_AFTER = 0.1

# A host (numpy) or device (cupy) array; cupy is untyped, so its arrays pass as Any.
Array = np.ndarray
# Makes progress on a transfer; True once it has finished.
Test = Callable[[], bool]
# A callback run once a collective has completed (None entries are skipped).
Callback = Callable[[], object]


class _Timed(Protocol):
    """What ``_wait`` needs of a communicator: its deadline and how to fail."""

    timeout: float

    def _fail(self, info: CollectiveInfo, waited: float) -> NoReturn: ...


class ReduceOp:
    """Reduction operations of ``all_reduce``, ``reduce`` and ``reduce_scatter``:
    ``ReduceOp.SUM``, ``AVG``, ``PRODUCT``, ``MAX``, ``MIN``."""

    __slots__ = ("name",)

    # the instances, set below
    SUM: ClassVar[ReduceOp]
    AVG: ClassVar[ReduceOp]
    PRODUCT: ClassVar[ReduceOp]
    MAX: ClassVar[ReduceOp]
    MIN: ClassVar[ReduceOp]

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"ReduceOp.{self.name}"

    def __reduce__(self) -> tuple[Callable[[type, str], ReduceOp], tuple[type, str]]:
        return getattr, (ReduceOp, self.name)


for _name in ("SUM", "AVG", "PRODUCT", "MAX", "MIN"):
    setattr(ReduceOp, _name, ReduceOp(_name))
del _name


class CollectiveTimeoutError(RuntimeError):
    """A collective did not complete before its deadline."""


class CommunicatorBrokenError(RuntimeError):
    """A collective was issued on a communicator that an earlier failure left unusable."""


class CollectiveInfo:
    """What a collective was, for error messages and debugging (``Work.info``)."""

    __slots__ = ("op", "seq", "rank", "world_size", "count", "dtype", "root", "reduce_op")

    def __init__(
        self,
        op: str,
        seq: int,
        rank: int,
        world_size: int,
        count: int = 0,
        dtype: np.dtype | None = None,
        root: int | None = None,
        reduce_op: ReduceOp | None = None,
    ):
        self.op, self.seq, self.rank, self.world_size = op, seq, rank, world_size
        self.count, self.dtype, self.root, self.reduce_op = count, dtype, root, reduce_op

    @property
    def nbytes(self) -> int:
        """The size of the collective's buffer in bytes."""
        return 0 if self.dtype is None else self.count * np.dtype(self.dtype).itemsize

    def describe(self) -> str:
        """One line naming the collective, its sequence number, sizes and rank, for error messages."""
        parts = [f"collective #{self.seq} {self.op}"]
        if self.reduce_op is not None:
            parts.append(f"op={self.reduce_op.name}")
        if self.dtype is not None:
            parts.append(f"({self.count} x {self.dtype}, {self.nbytes} bytes)")
        if self.root is not None:
            parts.append(f"root={self.root}")
        parts.append(f"on rank {self.rank} of {self.world_size}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"<CollectiveInfo {self.describe()}>"


def _sizes(array: Array | None) -> tuple[int, np.dtype | None]:
    """``array``'s element count and dtype for a ``CollectiveInfo`` (0, None: no array)."""
    return (0, None) if array is None else (int(array.size), array.dtype)


def started(work: Work | None) -> Work:
    """The ``Work`` of a collective started with ``async_op=True`` (which always returns one;
    None would mean a blocking call was passed here by mistake)."""
    if work is None:
        raise RuntimeError("expected the Work of a collective started with async_op=True, got None")
    return work


def _finished() -> bool:
    return True


def _wait(
    comm: _Timed,
    test: Test,
    started: float,
    timeout: float | None,
    info: Callable[[], CollectiveInfo],
) -> None:
    """Call ``test()`` until it returns True (see _SLEEP_AFTER). Past the deadline, fail with
    ``info()``, the collective's ``CollectiveInfo`` (only built then)."""
    if test():
        return
    now = time.monotonic()
    deadline = started + comm.timeout
    if timeout is not None:
        deadline = min(deadline, now + timeout)
    sleep_from, polls, budget = now + _SLEEP_AFTER, 0, _POLLS_BEFORE_YIELD
    while not test():
        polls += 1
        if polls < budget:
            continue
        polls = 0
        now = time.monotonic()
        if now > deadline:
            comm._fail(info(), now - started)
        if now > sleep_from:
            budget = 1
            time.sleep(1e-4)
        else:
            os.sched_yield()


class Work:
    """Handle of a collective in flight (``async_op=True``). ``wait()`` blocks until it is done
    (polling, so the deadline can be enforced); ``is_completed()`` tests without blocking.

    Implementations create one (through ``Communicator._issue``) right after starting the
    transfer, with ``test()``, which makes progress and returns True once the transfer has
    finished; it claims the communicator's next sequence number. ``array`` is the data the
    collective is about."""

    __slots__ = (
        "seq",
        "_comm",
        "_op",
        "_data",
        "_root",
        "_reduce_op",
        "_callbacks",
        "_done",
        "_started",
        "_result",
        "_test",
    )

    def __init__(
        self,
        comm: Communicator,
        test: Test,
        op: str,
        array: Array | None = None,
        root: int | None = None,
        reduce_op: ReduceOp | None = None,
    ):
        comm.seq += 1
        self.seq = comm.seq
        comm.in_flight[self.seq] = self
        self._comm, self._op, self._data, self._root, self._reduce_op = (
            comm,
            op,
            array,
            root,
            reduce_op,
        )
        self._callbacks: list[Callback] = []
        self._done = False
        self._started = time.monotonic()
        self._result: list[Any] | None = None  # the tensors written (tensor-level collectives)
        self._test = test  # makes progress; True once the transfer has finished

    @property
    def info(self) -> CollectiveInfo:
        """What this collective is (op, sequence number, count, dtype), for messages."""
        comm, array = self._comm, self._data
        return CollectiveInfo(
            self._op,
            self.seq,
            comm.rank,
            comm.world_size,
            *_sizes(array),
            root=self._root,
            reduce_op=self._reduce_op,
        )

    def _then(self, *callbacks: Callback | None) -> Work:
        """Run each ``callback()`` (None: skipped) once, when the collective completes (at
        once if it has), in order."""
        for callback in callbacks:
            if callback is None:
                continue
            if self._done:
                callback()
            else:
                self._callbacks.append(callback)
        return self

    def _complete(self) -> None:
        self._done = True
        self._comm.in_flight.pop(self.seq, None)
        # what the watchdog reports as the last completed collective, without keeping this
        # Work (and so its arrays) alive after its owner has let go of it
        comm, op, seq, root, reduce_op = self._comm, self._op, self.seq, self._root, self._reduce_op
        sizes = _sizes(self._data)
        comm.last_done = lambda: CollectiveInfo(
            op, seq, comm.rank, comm.world_size, *sizes, root=root, reduce_op=reduce_op
        )
        if self._callbacks:
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    def is_completed(self) -> bool:
        """Whether the collective has finished (never blocks)."""
        if not self._done and self._test():
            self._complete()
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the collective completes. Past the communicator's deadline (or
        ``timeout`` seconds from now, if sooner) raise ``CollectiveTimeoutError``."""
        if not self._done:
            _wait(self._comm, self._test, self._started, timeout, lambda: self.info)
            self._complete()
        return True

    def result(self) -> list[Any] | None:
        """The tensors this collective wrote (tensor-level collectives)."""
        return self._result

    def get_future(self) -> Future:
        """A ``distgrad.futures.Future`` completed with this collective: its value is the
        list of tensors it wrote (tensor-level collectives, as PyTorch's), else ``[array]``.
        As everything here, it completes when tested (``done()``) or waited for."""
        from ..futures import Future

        def value() -> list[Any]:
            return self._result if self._result is not None else [self._data]

        return Future._pending(self.is_completed, self.wait, value)

    def __repr__(self) -> str:
        state = "completed" if self._done else "in flight"
        return f"<Work {self.info.describe()}, {state}>"


class P2PInfo(CollectiveInfo):
    """What a point-to-point transfer was (``op``: ``"send"``/``"recv"``, ``root``: the peer)."""

    __slots__ = ("tag",)

    def __init__(
        self,
        op: str,
        rank: int,
        world_size: int,
        peer: int | None,
        tag: int,
        count: int = 0,
        dtype: np.dtype | None = None,
    ):
        super().__init__(op, 0, rank, world_size, count, dtype, root=peer)
        self.tag = tag

    def describe(self) -> str:
        peer = "any rank" if self.root is None else f"rank {self.root}"
        where = "to" if self.op == "send" else "from"
        sizes = "" if self.dtype is None else f" ({self.count} x {self.dtype}, {self.nbytes} bytes)"
        return f"{self.op} {where} {peer} (tag {self.tag}){sizes} on rank {self.rank}"


class P2PWork:
    """Handle of a point-to-point transfer (``isend``/``irecv``; not numbered: only the two
    ranks involved take part). ``wait()`` enforces the communicator's deadline; for a receive
    from any rank, ``source`` is the sender once it has completed."""

    def __init__(
        self,
        comm: Communicator,
        test: Test,
        info: P2PInfo,
        then: Sequence[Callback | None] = (),
        source: Callable[[], int] | None = None,
    ):
        self._comm, self._test, self.info = comm, test, info
        self._then, self._done, self._started = then, False, time.monotonic()
        self._source = source  # () -> the sender's rank
        self.source: int | None = info.root

    def _complete(self) -> None:
        self._done = True
        if self._source is not None:
            self.source = self._source()
        for callback in self._then:
            if callback is not None:
                callback()

    def is_completed(self) -> bool:
        """Whether the send or receive has finished (never blocks)."""
        if not self._done and self._test():
            self._complete()
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the transfer completes (``CollectiveTimeoutError`` past the
        deadline, or ``timeout`` seconds from now if sooner)."""
        if not self._done:
            _wait(self._comm, self._test, self._started, timeout, lambda: self.info)
            self._complete()
        return True

    def __repr__(self) -> str:
        state = "completed" if self._done else "in flight"
        return f"<P2PWork {self.info.describe()}, {state}>"


class Communicator(ABC):
    """A group of ranks that run collectives together on arrays of one kind (``device``).

    Every collective takes arrays (any layout; implementations stage non-contiguous or
    foreign arrays themselves) and writes its result when it completes; it returns a ``Work``
    at once, or with ``async_op=False`` waits and returns None. Ranks must issue the same
    collectives in the same order with matching sizes.
    Rank-major buffers (``allgather``'s output, ``reduce_scatter``'s input, ``gather``'s
    output, ``scatter``'s input) hold ``world_size`` blocks of the per-rank array, rank 0 first.
    """

    kind: str = ""
    device: str = "cpu"

    def __init__(self, rank: int, world_size: int, timeout: float = DEFAULT_TIMEOUT):
        self.rank = rank
        self.world_size = world_size
        self.timeout = float(timeout)
        self.seq = 0
        self.failure: str | None = None
        self.in_flight: dict[int, Work] = {}  # seq -> Work not completed yet
        # functions returning the CollectiveInfo of the last completed collective, and of the
        # one a blocking call is waiting for
        self.last_done: Callable[[], CollectiveInfo] | None = None
        self.blocking: Callable[[], CollectiveInfo] | None = None
        self.watchdog: Watchdog | None = None  # reports every rank's state on a missed deadline
        self.desync: DesyncCheck | None = None  # the fingerprint channel (desync.py), if checked
        self.next_tag: int | None = None  # a caller's label of its next collective (desync.py)
        # tags of every rank -> the exception to raise when they differ
        self.tag_error: Callable[[list[Any]], Exception] | None = None
        self.label = "WORLD"  # the process group, for messages
        self.debug = False  # collectives checked across ranks first (contract.py)

    # ---- bookkeeping shared by implementations ------------------------------------------
    def _issue(
        self,
        test: Test,
        async_op: bool,
        op: str,
        array: Array | None = None,
        root: int | None = None,
        reduce_op: ReduceOp | None = None,
        then: Sequence[Callback | None] = (),
    ) -> Work | None:
        """Finish starting a collective whose transfer ``test()`` tracks: return a ``Work``
        when ``async_op``, else wait for it here and return None. ``then``: callbacks (None
        entries skipped) to run, in order, once it has completed."""
        if self.desync is not None:
            test = self.desync.guard(self, test, op, array, root, reduce_op)
        if _traffic.TALLIES:
            _traffic.record(self, op, array)
        if async_op:
            return Work(self, test, op, array, root, reduce_op)._then(*then)
        self.seq += 1
        seq = self.seq
        # not the array itself: ``last_done`` outlives the collective
        sizes = _sizes(array)

        def info() -> CollectiveInfo:
            return CollectiveInfo(
                op, seq, self.rank, self.world_size, *sizes, root=root, reduce_op=reduce_op
            )

        self.blocking = info
        _wait(self, test, time.monotonic(), None, info)
        self.blocking, self.last_done = None, info
        for callback in then:
            if callback is not None:
                callback()
        return None

    def _raise_broken(self, op: str) -> NoReturn:
        """Implementations call this before starting ``op`` when ``self.failure`` is set."""
        raise CommunicatorBrokenError(
            f"[rank {self.rank}] cannot start {op}: this {self.kind} "
            f"communicator is broken since {self.failure}"
        )

    def _fail(self, info: CollectiveInfo, waited: float) -> NoReturn:
        self.failure = f"{info.describe()} timed out"
        report = None
        if self.watchdog is not None:
            try:
                report = self.watchdog.report(self, info, waited)
            except Exception as exc:  # the timeout must be raised whatever happens
                report = f"(the watchdog failed: {exc!r})"
        message = (
            f"[rank {self.rank}] {info.describe()} did not complete within "
            f"{waited:.1f} s (timeout {self.timeout:g} s). Another rank has probably not "
            f"reached it: it is stuck, has failed, or issued collectives in a different "
            f"order or with different sizes. Set DISTGRAD_COLLECTIVE_TIMEOUT or "
            f"init(timeout=...) to change the deadline. The job will be taken down."
        )
        if report:
            message += f" Watchdog report: {report}"
        raise CollectiveTimeoutError(message)

    # ---- argument checks shared by implementations ---------------------------------------
    def _check_root(self, op: str, root: int | None) -> None:
        """Raise if the communicator is broken or ``root`` (if given) is not one of its ranks."""
        if self.failure is not None:
            self._raise_broken(op)
        if root is not None and not 0 <= root < self.world_size:
            raise ValueError(
                f"{op}: root {root} is not a rank of this world (size {self.world_size})"
            )

    def _check_blocks(self, op: str, block: Array, full: Array) -> None:
        """Raise unless the rank-major buffer ``full`` holds world_size blocks like ``block``."""
        if full.size != block.size * self.world_size or full.dtype != block.dtype:
            raise ValueError(
                f"{op}: the rank-major buffer must hold world_size ({self.world_size})"
                f" x {block.size} elements of {block.dtype}, got {full.size} of "
                f"{full.dtype}"
            )

    def _root_buffer(self, op: str, name: str, buf: Array | None) -> Array:
        """``buf``, the root's ``name`` buffer of ``op``; raise if the caller gave None."""
        if buf is None:
            raise ValueError(f"{op}: the root (rank {self.rank}) needs a {name} buffer, got None")
        return buf

    @staticmethod
    def _check_reduce(op: ReduceOp, dtype: np.dtype) -> None:
        """Raise unless ``op`` can reduce arrays of ``dtype``."""
        if not isinstance(op, ReduceOp):
            raise TypeError(f"op must be a distgrad.distributed.ReduceOp, got {op!r}")
        kind = dtype.kind
        if op is ReduceOp.AVG and not (kind == "c" or is_floating(dtype)):
            raise TypeError(
                f"ReduceOp.AVG needs a floating point or complex array, got {dtype}; "
                f"reduce with SUM and divide instead"
            )
        if op in (ReduceOp.MAX, ReduceOp.MIN) and kind == "c":
            raise TypeError(f"ReduceOp.{op.name} is not defined for complex arrays ({dtype})")

    # ---- the collectives -------------------------------------------------------------------
    @abstractmethod
    def allreduce(
        self, array: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        """Reduce ``array`` over all ranks, in place on every rank."""

    @abstractmethod
    def broadcast(self, array: Array, root: int, async_op: bool = True) -> Work | None:
        """Copy ``root``'s ``array`` into ``array`` on every rank."""

    @abstractmethod
    def allgather(self, send: Array, recv: Array, async_op: bool = True) -> Work | None:
        """Every rank's ``send`` into the rank-major ``recv`` (``world_size * send.size``)."""

    @abstractmethod
    def reduce_scatter(
        self, send: Array, recv: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        """Reduce the rank-major ``send`` over ranks; rank r receives block r in ``recv``."""

    @abstractmethod
    def reduce(
        self, array: Array, root: int, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        """Reduce ``array`` over all ranks into ``root``'s ``array`` (others unchanged)."""

    @abstractmethod
    def gather(
        self, send: Array, recv: Array | None, root: int, async_op: bool = True
    ) -> Work | None:
        """Every rank's ``send`` into ``root``'s rank-major ``recv`` (None elsewhere)."""

    @abstractmethod
    def scatter(
        self, send: Array | None, recv: Array, root: int, async_op: bool = True
    ) -> Work | None:
        """Block r of ``root``'s rank-major ``send`` (None elsewhere) into rank r's ``recv``."""

    @abstractmethod
    def barrier(self, async_op: bool = True) -> Work | None:
        """Completes once every rank has entered it."""

    @abstractmethod
    def abort(self, code: int = 1) -> None:
        """Take the whole job down now (never returns)."""

    def alltoall(self, send: Array, recv: Array, async_op: bool = True) -> Work | None:
        """Block r of the rank-major ``send`` goes to rank r, which receives it as block
        (this rank) of its rank-major ``recv``."""
        raise NotImplementedError(f"{type(self).__name__} has no alltoall")

    def alltoallv(
        self,
        send: Array,
        send_counts: Sequence[int],
        recv: Array,
        recv_counts: Sequence[int],
        async_op: bool = True,
    ) -> Work | None:
        """``alltoall`` with blocks of ``send_counts[r]`` elements to rank r and
        ``recv_counts[r]`` from rank r (flat ``send`` and ``recv``, rank-major)."""
        raise NotImplementedError(f"{type(self).__name__} has no alltoallv")

    def send(self, array: Array, dst: int, tag: int = 0) -> P2PWork:
        """Start sending ``array`` to rank ``dst``."""
        raise NotImplementedError(f"{type(self).__name__} has no point-to-point transfers")

    def recv(self, array: Array, src: int | None, tag: int = 0) -> P2PWork:
        """Start receiving into ``array`` from rank ``src`` (None: any rank)."""
        raise NotImplementedError(f"{type(self).__name__} has no point-to-point transfers")

    # ---- small Python objects (pickled; not for arrays) ----------------------------------
    def allgather_object(self, obj: object) -> list[Any]:
        """Every rank's picklable ``obj``, as a list indexed by rank."""
        data = np.frombuffer(pickle.dumps(obj), np.uint8)
        sizes = np.empty(self.world_size, np.int64)
        self.allgather(np.array([data.size], np.int64), sizes, async_op=False)
        width = int(sizes.max())
        send = np.zeros(width, np.uint8)
        send[: data.size] = data
        recv = np.empty((self.world_size, width), np.uint8)
        self.allgather(send, recv, async_op=False)
        return [pickle.loads(recv[r, : sizes[r]].tobytes()) for r in range(self.world_size)]

    def broadcast_object(self, obj: object, root: int = 0) -> Any:
        """``root``'s picklable ``obj`` on every rank."""
        data = np.frombuffer(pickle.dumps(obj), np.uint8) if self.rank == root else None
        size = np.array([0 if data is None else data.size], np.int64)
        self.broadcast(size, root, async_op=False)
        buf = data.copy() if data is not None else np.empty(int(size[0]), np.uint8)
        self.broadcast(buf, root, async_op=False)
        return obj if self.rank == root else pickle.loads(buf.tobytes())

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} rank {self.rank} of {self.world_size}, {self.seq} collectives>"
        )


class LocalCommunicator(Communicator):
    """The world of one process (used when mpi4py is not installed): every collective is a
    local copy, completed at once."""

    kind = "local"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(0, 1, timeout)

    def _done(
        self,
        async_op: bool,
        op: str,
        array: Array | None = None,
        root: int | None = None,
        reduce_op: ReduceOp | None = None,
    ) -> Work | None:
        if self.failure is not None:
            self._raise_broken(op)
        return self._issue(_finished, async_op, op, array, root, reduce_op)

    @staticmethod
    def _check_local_root(root: int) -> None:
        if root != 0:
            raise ValueError(f"root {root} is not a rank of a world of size 1")

    def allreduce(
        self, array: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        self._check_reduce(op, array.dtype)
        return self._done(async_op, "allreduce", array, reduce_op=op)

    def broadcast(self, array: Array, root: int, async_op: bool = True) -> Work | None:
        self._check_local_root(root)
        return self._done(async_op, "broadcast", array, root)

    def allgather(self, send: Array, recv: Array, async_op: bool = True) -> Work | None:
        recv[...] = send.reshape(recv.shape)  # (recv.reshape would copy a non-contiguous recv)
        return self._done(async_op, "allgather", send)

    def reduce_scatter(
        self, send: Array, recv: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        self._check_reduce(op, send.dtype)
        recv[...] = send.reshape(recv.shape)
        return self._done(async_op, "reduce_scatter", send, reduce_op=op)

    def reduce(
        self, array: Array, root: int, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        self._check_local_root(root)
        self._check_reduce(op, array.dtype)
        return self._done(async_op, "reduce", array, root, op)

    def gather(
        self, send: Array, recv: Array | None, root: int, async_op: bool = True
    ) -> Work | None:
        self._check_local_root(root)
        recv = self._root_buffer("gather", "recv", recv)
        recv[...] = send.reshape(recv.shape)
        return self._done(async_op, "gather", send, root)

    def scatter(
        self, send: Array | None, recv: Array, root: int, async_op: bool = True
    ) -> Work | None:
        self._check_local_root(root)
        send = self._root_buffer("scatter", "send", send)
        recv[...] = send.reshape(recv.shape)
        return self._done(async_op, "scatter", recv, root)

    def barrier(self, async_op: bool = True) -> Work | None:
        return self._done(async_op, "barrier")

    def alltoall(self, send: Array, recv: Array, async_op: bool = True) -> Work | None:
        recv[...] = send.reshape(recv.shape)
        return self._done(async_op, "alltoall", send)

    def alltoallv(
        self,
        send: Array,
        send_counts: Sequence[int],
        recv: Array,
        recv_counts: Sequence[int],
        async_op: bool = True,
    ) -> Work | None:
        if list(send_counts) != list(recv_counts):
            raise ValueError(
                f"alltoallv: in a world of one the send counts {list(send_counts)} must equal "
                f"the receive counts {list(recv_counts)}"
            )
        recv.reshape(-1)[...] = send.reshape(-1)
        return self._done(async_op, "alltoall")

    def send(self, array: Array, dst: int, tag: int = 0) -> P2PWork:
        raise ValueError(f"send: a world of one has no rank {dst} to send to (only rank 0)")

    def recv(self, array: Array, src: int | None, tag: int = 0) -> P2PWork:
        raise ValueError(f"recv: a world of one has no rank {src} to receive from (only rank 0)")

    def abort(self, code: int = 1) -> NoReturn:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
