"""Stand-ins for cupy and cupy.cuda.nccl, enough to run ``NCCLCommunicator``'s logic on the
CPU: "GPU arrays" are numpy arrays with cupy's ``.data.ptr`` and ``.device``; streams and
events log what is done to them (in one shared ``log``); the fake NCCL communicator acts as
if every rank held the same data as this one (a sum over W ranks is W times the array), and
moves the bytes it is given by pointer, so wrong pointers, counts or datatypes show up as
wrong results.
"""

from __future__ import annotations

import ctypes
import itertools
from types import SimpleNamespace

import numpy as np

NCCL_NAMES = (
    "NCCL_INT8",
    "NCCL_UINT8",
    "NCCL_INT32",
    "NCCL_UINT32",
    "NCCL_INT64",
    "NCCL_UINT64",
    "NCCL_FLOAT16",
    "NCCL_FLOAT32",
    "NCCL_FLOAT64",
    "NCCL_SUM",
    "NCCL_PROD",
    "NCCL_MAX",
    "NCCL_MIN",
    "NCCL_AVG",
)
_NUMPY = {
    "NCCL_INT8": np.int8,
    "NCCL_UINT8": np.uint8,
    "NCCL_INT32": np.int32,
    "NCCL_UINT32": np.uint32,
    "NCCL_INT64": np.int64,
    "NCCL_UINT64": np.uint64,
    "NCCL_FLOAT16": np.float16,
    "NCCL_FLOAT32": np.float32,
    "NCCL_FLOAT64": np.float64,
}


class FakeDevice:
    def __init__(self, id: int):
        self.id = id
        self.pci_bus_id = f"0000:{id + 1:02x}:00.0"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        pass


class FakeArray(np.ndarray):
    """A "GPU array" on GPU 0: host memory, cupy's attributes."""

    @property
    def data(self):
        return SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def device(self):
        return FakeDevice(0)


def gpu(values, dtype=None) -> FakeArray:
    return np.array(values, dtype).view(FakeArray)


class FakeStream:
    def __init__(self, log, ptr, non_blocking=False):
        self.log, self.ptr, self.non_blocking = log, ptr, non_blocking

    def wait_event(self, event):
        self.log.append(("wait", self.ptr, event.name))

    def __enter__(self):
        self.log.append(("enter stream", self.ptr))
        return self

    def __exit__(self, *exc):
        self.log.append(("exit stream", self.ptr))
        return False


class FakeEvent:
    def __init__(self, cuda, disable_timing=False):
        self.cuda = cuda
        self.name = f"event{next(cuda.counter)}"
        self.time = None
        self.disable_timing = disable_timing

    def record(self, stream):
        assert stream is not None, "record the event on an explicit stream"
        self.time = next(self.cuda.clock)
        self.cuda.log.append(("record", self.name, stream.ptr))

    @property
    def done(self):
        return self.cuda.complete

    def synchronize(self):
        pass


class FakeCuda:
    def __init__(self, log):
        self.log = log
        self.counter = itertools.count(1)
        self.clock = itertools.count(0)
        self.complete = True  # whether events report completion
        self.compute = FakeStream(log, 0)
        self.runtime = SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0)

    def Device(self, index=0):
        return FakeDevice(index)

    def Stream(self, non_blocking=False):
        return FakeStream(self.log, 777, non_blocking)

    def Event(self, disable_timing=False):
        return FakeEvent(self, disable_timing)

    def get_current_stream(self):
        return self.compute

    def get_elapsed_time(self, start, end):
        return 1000.0 * (end.time - start.time)  # one clock tick = one second


class FakeCupy:
    ndarray = FakeArray

    def __init__(self):
        self.log = []
        self.cuda = FakeCuda(self.log)

    @staticmethod
    def ascontiguousarray(a):
        return np.ascontiguousarray(a).view(FakeArray)

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype).view(FakeArray)


def _at(ptr, count, datatype):
    dtype = np.dtype(_NUMPY[datatype])
    return np.frombuffer((ctypes.c_char * (count * dtype.itemsize)).from_address(ptr), dtype)


class FakeNcclComm:
    """Every rank is taken to hold this rank's data."""

    def __init__(self, nccl, world_size, unique_id, rank):
        self.nccl, self.world_size, self.rank = nccl, world_size, rank
        self.unique_id = unique_id
        self.aborted = False
        self.async_error = None

    def _log(self, *entry):
        self.nccl.log.append(entry)

    def _reduce(self, x, op):
        if op == "NCCL_SUM":
            x *= x.dtype.type(self.world_size)
        elif op == "NCCL_PROD":
            x **= self.world_size

    def allReduce(self, send, recv, count, datatype, op, stream):
        self._log("allReduce", send, recv, count, datatype, op, stream)
        out = _at(recv, count, datatype)
        out[...] = _at(send, count, datatype)
        self._reduce(out, op)

    def broadcast(self, send, recv, count, datatype, root, stream):
        self._log("broadcast", send, recv, count, datatype, root, stream)
        _at(recv, count, datatype)[...] = _at(send, count, datatype)

    def reduce(self, send, recv, count, datatype, op, root, stream):
        self._log("reduce", send, recv, count, datatype, op, root, stream)
        if self.rank == root:
            out = _at(recv, count, datatype)
            out[...] = _at(send, count, datatype)
            self._reduce(out, op)

    def allGather(self, send, recv, count, datatype, stream):
        self._log("allGather", send, recv, count, datatype, stream)
        block = _at(send, count, datatype).copy()
        _at(recv, count * self.world_size, datatype)[...] = np.tile(block, self.world_size)

    def reduceScatter(self, send, recv, recvcount, datatype, op, stream):
        self._log("reduceScatter", send, recv, recvcount, datatype, op, stream)
        blocks = _at(send, recvcount * self.world_size, datatype).reshape(self.world_size, -1)
        out = _at(recv, recvcount, datatype)
        out[...] = blocks[self.rank]
        self._reduce(out, op)

    def check_async_error(self):
        if self.async_error is not None:
            raise RuntimeError(self.async_error)

    def abort(self):
        self.aborted = True
        self._log("abort")


class FakeNccl:
    available = True

    def __init__(self, log, version=21805, native_avg=True, fail_unique_id=None):
        self.log = log
        for name in NCCL_NAMES:
            setattr(self, name, name)
        if not native_avg:
            del self.NCCL_AVG
        self.version = version
        self.fail_unique_id = fail_unique_id
        self.comms = []

    def get_version(self):
        return self.version

    def get_unique_id(self):
        if self.fail_unique_id:
            raise RuntimeError(self.fail_unique_id)
        return tuple(range(128))

    def NcclCommunicator(self, world_size, unique_id, rank):
        comm = FakeNcclComm(self, world_size, unique_id, rank)
        self.comms.append(comm)
        return comm
