"""``MPICommunicator``: collectives on numpy arrays over mpi4py's buffer interface.

Arrays go to MPI as buffers, never pickled. A C-contiguous numpy array of a type MPI knows is
used in place; anything else (non-contiguous views, cupy arrays, bfloat16) is staged through a
contiguous host copy that is written back when the collective completes. Reductions of the
2-byte floats send 2 bytes per element with a user-defined operation (numpy's arithmetic: add
in float32, round each partial result to the format, round to nearest even, as NCCL does):
MPI has no bfloat16 type here (MPICH's ``MPI_BFLOAT16_T`` is null), and MPICH's own float16
sum (``MPIX_C_FLOAT16``) takes ~200 ns per element, 6x the step time of a float16-compressed
DDP step on the MLP benchmark; a correctly rounded sum is the same either way. Messages are cut into
chunks of at most ``max_count`` elements (MPI counts are C ints) so any size works with any MPI
library; big rank-major buffers (allgather, gather, scatter, reduce_scatter) then go through
per-chunk ``(world_size, chunk)`` temporaries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend import array_module_for
from .communicator import (
    DEFAULT_TIMEOUT,
    Array,
    Callback,
    Communicator,
    P2PInfo,
    P2PWork,
    ReduceOp,
    Test,
    Work,
)

__all__ = ["MPICommunicator"]

INT_MAX = 2**31 - 1

# A buffer as mpi4py takes it ([array, datatype]); mpi4py's objects are Any when it is absent.
Message = list[Any]


def _tester(requests: Sequence[Any]) -> Test:
    """A ``Work`` test for MPI requests."""
    if len(requests) == 1:
        return requests[0].Test
    return functools.partial(requests[0].Testall, requests)


def _copy_back(array: Array, host: np.ndarray) -> None:
    host = host.reshape(array.shape)
    if isinstance(array, np.ndarray):
        np.copyto(array, host, casting="unsafe")
    else:
        array[...] = array_module_for(array).asarray(host).astype(array.dtype)


def _host(array: Array) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else array_module_for(array).asnumpy(array)


def _is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16"


def _is_half(dtype: np.dtype) -> bool:
    """float16 or bfloat16: reduced by ``_half_op`` over 2-byte elements."""
    return dtype == np.float16 or _is_bfloat16(dtype)


_UFUNCS: dict[str, np.ufunc] = {
    "SUM": np.add,
    "AVG": np.add,
    "PRODUCT": np.multiply,
    "MAX": np.maximum,
}
_UFUNCS["MIN"] = np.minimum


def _half_op(MPI: Any, name: str, dtype: np.dtype) -> Any:
    """An MPI operation reducing ``dtype`` (float16 or bfloat16) elements, sent as 2-byte
    integers, with reduction ``name``."""
    ufunc = _UFUNCS[name]

    def reduce(inbuf: Any, inoutbuf: Any, datatype: Any) -> None:
        a = np.frombuffer(inbuf, np.uint16).view(dtype)
        b = np.frombuffer(inoutbuf, np.uint16).view(dtype)
        ufunc(b, a, out=b)

    return MPI.Op.Create(reduce, commute=True)


class MPICommunicator(Communicator):
    """Collectives over an mpi4py communicator (``comm``), on host arrays."""

    kind = "mpi"
    device = "cpu"

    def __init__(self, comm: Any, timeout: float = DEFAULT_TIMEOUT, max_count: int = INT_MAX):
        from mpi4py import MPI

        super().__init__(comm.Get_rank(), comm.Get_size(), timeout)
        self.MPI = MPI
        self.comm = comm
        self.max_count = int(max_count)
        self._types = MPI._typedict  # numpy type character -> predefined MPI datatype
        self._reductions: dict[tuple[ReduceOp, str], Any] = {}  # (op, type character) -> MPI op
        self._ops = {
            ReduceOp.SUM: MPI.SUM,
            ReduceOp.AVG: MPI.SUM,
            ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MAX: MPI.MAX,
            ReduceOp.MIN: MPI.MIN,
        }
        self._bool_ops = {
            ReduceOp.SUM: MPI.LOR,
            ReduceOp.MAX: MPI.LOR,
            ReduceOp.PRODUCT: MPI.LAND,
            ReduceOp.MIN: MPI.LAND,
        }

    # ---- buffers ----------------------------------------------------------------------------
    def _stage(
        self, array: Array, reduce: bool = False, write: bool = False
    ) -> tuple[np.ndarray, Any, Callback | None]:
        """``(buffer, MPI datatype, writeback)`` for ``array``: the array itself when MPI can
        use it, else a flat contiguous host copy (float32 for reductions of types MPI cannot
        reduce, raw bytes otherwise) and a callback copying results back (if ``write``)."""
        dtype = array.dtype
        if reduce and _is_half(dtype):
            base = np.ascontiguousarray(_host(array)).reshape(-1)
            in_place = isinstance(array, np.ndarray) and np.shares_memory(base, array)
            writeback = (lambda: _copy_back(array, base)) if write and not in_place else None
            return base.view(np.uint16), self.MPI.UINT16_T, writeback
        dt: Any = self._types.get(dtype.char) if dtype.kind in "biufc" else None
        if dt is not None and type(array) is np.ndarray and array.flags.c_contiguous:
            return array, dt, None
        if dt is None and reduce:
            base = np.ascontiguousarray(_host(array), np.float32).reshape(-1)
            buf, dt = base, self.MPI.FLOAT
        else:
            base = np.ascontiguousarray(_host(array)).reshape(-1)
            buf = base if dt is not None else base.view(np.uint8)
            dt = dt if dt is not None else self.MPI.BYTE
        in_place = isinstance(array, np.ndarray) and np.shares_memory(base, array)
        return buf, dt, (lambda: _copy_back(array, base)) if write and not in_place else None

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        step = self.max_count
        return [(s, min(s + step, n)) for s in range(0, n, step)] if n > step else [(0, n)]

    def _pieces(self, buf: np.ndarray) -> list[np.ndarray]:
        """``buf`` cut into messages of at most ``max_count`` elements."""
        if buf.size <= self.max_count:
            return [buf]
        flat = buf.reshape(-1)
        return [flat[s:e] for s, e in self._chunks(buf.size)]

    def _mpi_op(self, op: ReduceOp, dtype: np.dtype) -> Any:
        """The MPI op for ``op`` on ``dtype`` (validated once per pair, then cached)."""
        key = (op, dtype.char)
        if key not in self._reductions:
            self._check_reduce(op, dtype)
            if _is_half(dtype):
                self._reductions[key] = _half_op(self.MPI, op.name, dtype)
            else:
                self._reductions[key] = (self._bool_ops if dtype.kind == "b" else self._ops)[op]
        return self._reductions[key]

    def _check(
        self,
        op: str,
        root: int | None = None,
        block: Array | None = None,
        full: Array | None = None,
    ) -> None:
        """Raise if the communicator is broken, ``root`` is not a rank, or the rank-major
        buffer ``full`` does not hold world_size blocks like ``block``."""
        self._check_root(op, root)
        if full is not None:
            if block is None:
                raise TypeError(f"{op}: a rank-major buffer is checked against a block")
            self._check_blocks(op, block, full)

    def _average(
        self, buf: np.ndarray, op: ReduceOp, dtype: np.dtype | None = None
    ) -> Callback | None:
        if op is ReduceOp.AVG:
            if dtype is not None and _is_half(dtype):
                buf = buf.view(dtype)  # staged as 2-byte integers
            return lambda: np.divide(buf, self.world_size, out=buf)
        return None

    # ---- collectives ------------------------------------------------------------------------
    # Each checks its arguments, starts the MPI requests, then hands them to ``_issue`` (which
    # numbers the collective, and waits or returns a Work) with what to do on completion.
    def allreduce(
        self, array: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        mpi_op = self._reductions.get((op, array.dtype.char)) or self._mpi_op(op, array.dtype)
        if self.failure is not None:
            self._raise_broken("allreduce")
        buf, dt, writeback = self._stage(array, reduce=True, write=True)
        comm, IN_PLACE = self.comm, self.MPI.IN_PLACE
        pieces = [buf] if buf.size <= self.max_count else self._pieces(buf)
        requests = [comm.Iallreduce(IN_PLACE, [piece, dt], mpi_op) for piece in pieces]
        then = (
            (self._average(buf, op, array.dtype), writeback)
            if op is ReduceOp.AVG or writeback
            else ()
        )
        return self._issue(_tester(requests), async_op, "allreduce", array, None, op, then)

    def broadcast(self, array: Array, root: int, async_op: bool = True) -> Work | None:
        self._check("broadcast", root)
        buf, dt, writeback = self._stage(array, write=self.rank != root)
        requests = [self.comm.Ibcast([piece, dt], root) for piece in self._pieces(buf)]
        return self._issue(_tester(requests), async_op, "broadcast", array, root, then=(writeback,))

    def reduce(
        self, array: Array, root: int, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        mpi_op = self._mpi_op(op, array.dtype)
        self._check("reduce", root)
        is_root = self.rank == root
        buf, dt, writeback = self._stage(array, reduce=True, write=is_root)
        comm, IN_PLACE = self.comm, self.MPI.IN_PLACE
        requests = [
            comm.Ireduce(IN_PLACE, [piece, dt], mpi_op, root)
            if is_root
            else comm.Ireduce([piece, dt], None, mpi_op, root)
            for piece in self._pieces(buf)
        ]
        then = (self._average(buf, op, array.dtype), writeback) if is_root else ()
        return self._issue(_tester(requests), async_op, "reduce", array, root, op, then)

    def allgather(self, send: Array, recv: Array, async_op: bool = True) -> Work | None:
        self._check("allgather", None, send, recv)
        return self._gathered(
            "allgather", send, recv, None, async_op, lambda s, r: self.comm.Iallgather(s, r)
        )

    def gather(
        self, send: Array, recv: Array | None, root: int, async_op: bool = True
    ) -> Work | None:
        is_root = self.rank == root
        self._check("gather", root, send, recv if is_root else None)
        if is_root:
            full = self._root_buffer("gather", "recv", recv)
            return self._gathered(
                "gather", send, full, root, async_op, lambda s, r: self.comm.Igather(s, r, root)
            )
        sbuf, dt, _ = self._stage(send)
        requests = [self.comm.Igather([piece, dt], None, root) for piece in self._pieces(sbuf)]
        return self._issue(_tester(requests), async_op, "gather", send, root)

    def _gathered(
        self,
        op: str,
        send: Array,
        recv: Array,
        root: int | None,
        async_op: bool,
        start: Callable[[Message, Message], Any],
    ) -> Work | None:
        """Start ``start(send, recv)`` per chunk of the per-rank block; the chunks of a
        multi-chunk message land in temporaries copied into ``recv``'s columns at the end."""
        sbuf, dt, _ = self._stage(send)
        rbuf, _, writeback = self._stage(recv, write=True)
        n = sbuf.size
        chunks = self._chunks(n)
        if len(chunks) == 1:
            requests = [start([sbuf, dt], [rbuf, dt])]
            return self._issue(_tester(requests), async_op, op, send, root, then=(writeback,))
        sflat, rows = sbuf.reshape(-1), rbuf.reshape(self.world_size, n)
        temps = [np.empty((self.world_size, e - s), rbuf.dtype) for s, e in chunks]
        requests = [start([sflat[s:e], dt], [tmp, dt]) for (s, e), tmp in zip(chunks, temps)]

        def unpack() -> None:
            for (s, e), tmp in zip(chunks, temps):
                rows[:, s:e] = tmp

        return self._issue(_tester(requests), async_op, op, send, root, then=(unpack, writeback))

    def _columns(self, sbuf: np.ndarray, n: int) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
        """Per chunk of ``n``: the (world_size, chunk) columns of rank-major ``sbuf``,
        contiguous (``sbuf`` itself for a single chunk)."""
        chunks = self._chunks(n)
        if len(chunks) == 1:
            return chunks, [sbuf]
        rows = sbuf.reshape(self.world_size, n)
        return chunks, [np.ascontiguousarray(rows[:, s:e]) for s, e in chunks]

    def scatter(
        self, send: Array | None, recv: Array, root: int, async_op: bool = True
    ) -> Work | None:
        is_root = self.rank == root
        self._check("scatter", root, recv, send if is_root else None)
        rbuf, dt, writeback = self._stage(recv, write=True)
        rflat = rbuf.reshape(-1)
        if is_root:
            full = self._root_buffer("scatter", "send", send)
            chunks, columns = self._columns(self._stage(full)[0], rbuf.size)
            requests = [
                self.comm.Iscatter([col, dt], [rflat[s:e], dt], root)
                for (s, e), col in zip(chunks, columns)
            ]
        else:
            requests = [
                self.comm.Iscatter(None, [piece, dt], root) for piece in self._pieces(rflat)
            ]
        return self._issue(_tester(requests), async_op, "scatter", recv, root, then=(writeback,))

    def reduce_scatter(
        self, send: Array, recv: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> Work | None:
        mpi_op = self._mpi_op(op, send.dtype)
        self._check("reduce_scatter", None, recv, send)
        rbuf, dt, writeback = self._stage(recv, reduce=True, write=True)
        chunks, columns = self._columns(self._stage(send, reduce=True)[0], rbuf.size)
        rflat = rbuf.reshape(-1)
        requests = [
            self.comm.Ireduce_scatter_block([col, dt], [rflat[s:e], dt], mpi_op)
            for (s, e), col in zip(chunks, columns)
        ]
        return self._issue(
            _tester(requests),
            async_op,
            "reduce_scatter",
            send,
            None,
            op,
            then=(self._average(rbuf, op, send.dtype), writeback),
        )

    def barrier(self, async_op: bool = True) -> Work | None:
        self._check("barrier")
        return self._issue(self.comm.Ibarrier().Test, async_op, "barrier")

    def alltoall(self, send: Array, recv: Array, async_op: bool = True) -> Work | None:
        self._check("alltoall")
        if send.size != recv.size or send.size % self.world_size or send.dtype != recv.dtype:
            raise ValueError(
                f"all_to_all: input and output must hold the same number of elements, "
                f"divisible by the group size ({self.world_size}), of one dtype: got "
                f"{send.size} x {send.dtype} and {recv.size} x {recv.dtype}"
            )
        if send.size // self.world_size > self.max_count:
            raise ValueError(f"alltoall: blocks of more than {self.max_count} elements")
        sbuf, dt, _ = self._stage(send)
        rbuf, _, writeback = self._stage(recv, write=True)
        request = self.comm.Ialltoall([sbuf, dt], [rbuf, dt])
        return self._issue(request.Test, async_op, "alltoall", send, then=(writeback,))

    def alltoallv(
        self,
        send: Array,
        send_counts: Sequence[int],
        recv: Array,
        recv_counts: Sequence[int],
        async_op: bool = True,
    ) -> Work | None:
        self._check("alltoall")
        for name, counts, buf in (("send", send_counts, send), ("recv", recv_counts, recv)):
            if len(counts) != self.world_size or sum(counts) != buf.size:
                raise ValueError(
                    f"all_to_all: the {name} split sizes {list(counts)} must be world_size "
                    f"({self.world_size}) numbers adding up to the {buf.size} elements"
                )
        if send.dtype != recv.dtype:
            raise ValueError(f"all_to_all: send is {send.dtype} but recv is {recv.dtype}")
        sbuf, dt, _ = self._stage(send)
        rbuf, _, writeback = self._stage(recv, write=True)

        def layout(counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
            sizes = np.asarray(counts, np.int64)
            displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            if displs[-1] + sizes[-1] > self.max_count:
                raise ValueError(f"all_to_all: more than {self.max_count} elements")
            return sizes.astype(np.int32), displs.astype(np.int32)

        request = self.comm.Ialltoallv(
            [sbuf, layout(send_counts), dt], [rbuf, layout(recv_counts), dt]
        )
        return self._issue(request.Test, async_op, "alltoall", None, then=(writeback,))

    def _peer(self, op: str, peer: int | None) -> None:
        if self.failure is not None:
            self._raise_broken(op)
        if peer is not None and not 0 <= peer < self.world_size:
            raise ValueError(f"{op}: rank {peer} is not in this group (size {self.world_size})")
        if peer == self.rank:
            raise ValueError(f"{op}: rank {peer} cannot {op} to or from itself")

    def send(self, array: Array, dst: int, tag: int = 0) -> P2PWork:
        self._peer("send", dst)
        buf, dt, _ = self._stage(array)
        requests = [self.comm.Isend([piece, dt], dst, tag) for piece in self._pieces(buf)]
        info = P2PInfo("send", self.rank, self.world_size, dst, tag, array.size, array.dtype)
        keep = (buf,)  # the staged copy must live until the send completes
        return P2PWork(self, _tester(requests), info, then=(lambda: keep,))

    def recv(self, array: Array, src: int | None, tag: int = 0) -> P2PWork:
        self._peer("recv", src)
        buf, dt, writeback = self._stage(array, write=True)
        pieces = self._pieces(buf)
        if src is None and len(pieces) > 1:
            raise ValueError(f"recv: name the sender (src) for more than {self.max_count} elements")
        status = self.MPI.Status()
        source = self.MPI.ANY_SOURCE if src is None else src
        requests = [self.comm.Irecv([piece, dt], source, tag) for piece in pieces]
        if len(requests) == 1:

            def test() -> bool:
                return requests[0].Test(status)

        else:
            test = _tester(requests)
        info = P2PInfo("recv", self.rank, self.world_size, src, tag, array.size, array.dtype)
        sender = (lambda: status.Get_source()) if src is None else None
        return P2PWork(self, test, info, then=(writeback,), source=sender)

    def abort(self, code: int = 1) -> None:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        self.MPI.COMM_WORLD.Abort(code)
