"""Collectives checked inside every rank of a real MPI job against numpy references (run by
``tests/distributed/test_collectives.py`` as ``mpiexec -n N pytest --with-mpi``; the file
name has no ``test_`` prefix, so a plain pytest run does not collect it).

Every rank builds every rank's input from the same seeds, so each can compute the expected
result locally.
"""

import numpy as np
import pytest

import distgrad
import distgrad.distributed as dist
from distgrad.distributed import ReduceOp

pytestmark = pytest.mark.mpi(min_size=2)

DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool"]
OPS = [ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PRODUCT, ReduceOp.MAX, ReduceOp.MIN]
NP_REDUCE = {
    ReduceOp.SUM: np.sum,
    ReduceOp.PRODUCT: np.prod,
    ReduceOp.MAX: np.max,
    ReduceOp.MIN: np.min,
    ReduceOp.AVG: np.mean,
}


@pytest.fixture(scope="module", autouse=True)
def world():
    dist.init()
    yield
    dist.barrier()


def inputs(shape, dtype, seed=0):
    """One array per rank: small values so products and sums stay exact."""
    out = []
    for r in range(dist.world_size()):
        rng = np.random.default_rng(1000 * seed + r)
        if dtype == "bool":
            out.append(rng.random(shape) < 0.5)
        elif dtype in ("uint8", "int32", "int64"):
            out.append(rng.integers(1, 4, shape).astype(dtype))
        else:
            out.append((rng.integers(-3, 4, shape) / 2).astype(dtype))
    return out


def reference(op, arrays):
    stacked = np.stack(arrays)
    if stacked.dtype == np.bool_:
        return (np.any if op in (ReduceOp.SUM, ReduceOp.MAX) else np.all)(stacked, axis=0)
    return NP_REDUCE[op](stacked, axis=0).astype(stacked.dtype)


def ops_for(dtype):
    float_ok = dtype.startswith("float")
    return [op for op in OPS if op is not ReduceOp.AVG or float_ok]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("async_op", [False, True])
def test_all_reduce_every_op(dtype, async_op):
    for op in ops_for(dtype):
        arrays = inputs((3, 5), dtype, seed=OPS.index(op))
        t = distgrad.tensor(arrays[dist.rank()].copy())
        version = t._version_value
        work = dist.all_reduce(t, op=op, async_op=async_op)
        if async_op:
            assert work.wait() and work.is_completed()
            assert work.result() == [t]
        else:
            assert work is None
        np.testing.assert_array_equal(t.numpy(), reference(op, arrays), err_msg=str(op))
        assert t._version_value == version + 1


def test_all_reduce_non_contiguous_writes_through_view():
    base = np.zeros((4, 6))
    base[:, ::2] = dist.rank() + 1
    view = distgrad.Tensor(base[:, ::2])
    dist.all_reduce(view)
    total = sum(range(1, dist.world_size() + 1))
    np.testing.assert_array_equal(base[:, ::2], total)
    np.testing.assert_array_equal(base[:, 1::2], 0)


def test_invalid_reductions_raise_before_communicating():
    seq = dist.get_communicator().seq
    with pytest.raises(TypeError, match="AVG needs a floating point"):
        dist.all_reduce(distgrad.tensor([1, 2]), op=ReduceOp.AVG)
    with pytest.raises(TypeError, match="must be a distgrad.distributed.ReduceOp"):
        dist.all_reduce(distgrad.tensor([1.0]), op="sum")
    assert dist.get_communicator().seq == seq


@pytest.mark.parametrize("async_op", [False, True])
def test_broadcast_from_every_rank(async_op):
    for src in range(dist.world_size()):
        arrays = inputs((7,), "float64", seed=src)
        t = distgrad.tensor(arrays[dist.rank()].copy())
        work = dist.broadcast(t, src=src, async_op=async_op)
        if async_op:
            work.wait()
        np.testing.assert_array_equal(t.numpy(), arrays[src])


@pytest.mark.parametrize("async_op", [False, True])
def test_all_gather(async_op):
    arrays = inputs((2, 3), "int64")
    out = [distgrad.zeros(2, 3, dtype=distgrad.int64) for _ in range(dist.world_size())]
    work = dist.all_gather(out, distgrad.tensor(arrays[dist.rank()]), async_op=async_op)
    if async_op:
        assert work.wait()
    for got, want in zip(out, arrays):
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("stacked", [True, False])
def test_all_gather_into_tensor(stacked):
    arrays = inputs((2, 3), "float32")
    w = dist.world_size()
    out = distgrad.zeros(*((w, 2, 3) if stacked else (2 * w, 3)))
    dist.all_gather_into_tensor(out, distgrad.tensor(arrays[dist.rank()]))
    want = np.stack(arrays) if stacked else np.concatenate(arrays)
    np.testing.assert_array_equal(out.numpy(), want)


@pytest.mark.parametrize("op", [ReduceOp.SUM, ReduceOp.MAX, ReduceOp.AVG])
def test_reduce_scatter(op):
    w, r = dist.world_size(), dist.rank()
    per_rank = [inputs((4,), "float64", seed=10 * s + 1) for s in range(w)]  # [source][dest]
    out = distgrad.zeros(4, dtype=distgrad.float64)
    dist.reduce_scatter(out, [distgrad.tensor(a) for a in per_rank[r]], op=op)
    np.testing.assert_allclose(out.numpy(), reference(op, [per_rank[s][r] for s in range(w)]))


def test_reduce_scatter_tensor_async():
    w, r = dist.world_size(), dist.rank()
    full = [inputs((w * 3,), "float32", seed=s)[0] for s in range(w)]
    out = distgrad.zeros(3)
    dist.reduce_scatter_tensor(out, distgrad.tensor(full[r]), async_op=True).wait()
    np.testing.assert_allclose(out.numpy(), np.sum(full, axis=0)[3 * r : 3 * r + 3])


@pytest.mark.parametrize("op", [ReduceOp.SUM, ReduceOp.MIN, ReduceOp.PRODUCT])
def test_reduce_to_every_rank(op):
    for dst in range(dist.world_size()):
        arrays = inputs((5,), "int32", seed=dst)
        t = distgrad.tensor(arrays[dist.rank()].copy())
        dist.reduce(t, dst=dst, op=op)
        want = reference(op, arrays) if dist.rank() == dst else arrays[dist.rank()]
        np.testing.assert_array_equal(t.numpy(), want)


@pytest.mark.parametrize("async_op", [False, True])
def test_gather_and_scatter(async_op):
    w, r = dist.world_size(), dist.rank()
    arrays = inputs((3,), "float64", seed=5)
    for root in range(w):
        gathered = [distgrad.zeros(3, dtype=distgrad.float64) for _ in range(w)]
        work = dist.gather(
            distgrad.tensor(arrays[r]), gathered if r == root else None, dst=root, async_op=async_op
        )
        if async_op:
            work.wait()
        if r == root:
            for got, want in zip(gathered, arrays):
                np.testing.assert_array_equal(got.numpy(), want)
        out = distgrad.zeros(3, dtype=distgrad.float64)
        pieces = [distgrad.tensor(a) for a in arrays] if r == root else None
        work = dist.scatter(out, pieces, src=root, async_op=async_op)
        if async_op:
            work.wait()
        np.testing.assert_array_equal(out.numpy(), arrays[r])


def test_objects():
    objects = [None] * dist.world_size()
    dist.all_gather_object(objects, {"rank": dist.rank(), "pad": "x" * dist.rank() * 50})
    assert [o["rank"] for o in objects] == list(range(dist.world_size()))
    payload = [1, "two", None] if dist.rank() == 0 else [None, None, None]
    dist.broadcast_object_list(payload, src=0)
    assert payload == [1, "two", None]


def test_barrier_and_sequence_numbers_agree():
    comm = dist.get_communicator()
    dist.barrier()
    work = dist.barrier(async_op=True)
    assert work.wait()
    seqs = [None] * dist.world_size()
    dist.all_gather_object(seqs, work.info.seq)
    assert len(set(seqs)) == 1
    assert comm.seq == work.info.seq + 2  # all_gather_object is two allgathers


def test_list_length_is_checked():
    with pytest.raises(ValueError, match="group size"):
        dist.all_gather([distgrad.zeros(2)], distgrad.zeros(2))


@pytest.fixture
def small_chunks():
    """Cut every message into chunks of at most 3 elements (stands in for the 2**31 - 1
    element limit of MPI counts)."""
    comm = dist.get_communicator()
    saved, comm.max_count = comm.max_count, 3
    yield
    comm.max_count = saved


@pytest.mark.parametrize("async_op", [False, True])
def test_chunked_messages(small_chunks, async_op):
    w, r = dist.world_size(), dist.rank()

    def done(work):
        if async_op:
            work.wait()

    arrays = inputs((10,), "float64", seed=3)
    t = distgrad.tensor(arrays[r].copy())
    done(dist.all_reduce(t, op=ReduceOp.AVG, async_op=async_op))
    np.testing.assert_allclose(t.numpy(), np.mean(arrays, axis=0))

    t = distgrad.tensor(arrays[r].copy())
    done(dist.broadcast(t, src=w - 1, async_op=async_op))
    np.testing.assert_array_equal(t.numpy(), arrays[w - 1])

    out = distgrad.zeros(w, 10, dtype=distgrad.float64)
    done(dist.all_gather_into_tensor(out, distgrad.tensor(arrays[r]), async_op=async_op))
    np.testing.assert_array_equal(out.numpy(), np.stack(arrays))

    gathered = [distgrad.zeros(10, dtype=distgrad.float64) for _ in range(w)]
    done(
        dist.gather(distgrad.tensor(arrays[r]), gathered if r == 0 else None, 0, async_op=async_op)
    )
    if r == 0:
        np.testing.assert_array_equal(np.stack([g.numpy() for g in gathered]), np.stack(arrays))

    got = distgrad.zeros(10, dtype=distgrad.float64)
    pieces = [distgrad.tensor(a) for a in arrays] if r == 0 else None
    done(dist.scatter(got, pieces, src=0, async_op=async_op))
    np.testing.assert_array_equal(got.numpy(), arrays[r])

    full = [inputs((w * 10,), "float64", seed=s)[0] for s in range(w)]
    got = distgrad.zeros(10, dtype=distgrad.float64)
    done(dist.reduce_scatter_tensor(got, distgrad.tensor(full[r]), async_op=async_op))
    np.testing.assert_allclose(got.numpy(), np.sum(full, axis=0)[10 * r : 10 * r + 10])

    t = distgrad.tensor(arrays[r].copy())
    done(dist.reduce(t, dst=0, op=ReduceOp.MAX, async_op=async_op))
    if r == 0:
        np.testing.assert_array_equal(t.numpy(), np.max(arrays, axis=0))


def test_chunked_allreduce_issues_one_request_per_chunk(small_chunks):
    comm = dist.get_communicator()
    saved, comm.desync = comm.desync, None  # (its check wraps the test looked at here)
    work = comm.allreduce(np.ones(10), ReduceOp.SUM)
    comm.desync = saved
    assert len(work._test.args[0]) == 4  # Testall on 4 requests
    work.wait()


def test_communicator_interface_on_raw_arrays():
    comm = dist.get_communicator()
    assert comm.kind == "mpi" and comm.device == "cpu"
    a = np.full(4, float(comm.rank + 1))
    comm.allreduce(a, ReduceOp.MAX).wait()
    np.testing.assert_array_equal(a, comm.world_size)
