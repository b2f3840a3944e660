"""torch.distributed's API on process groups, checked inside every rank of a real job (3 or 4
ranks, run by ``tests/distributed/test_groups.py``) against numpy references.

The group under test is ranks [1, 2] (a subgroup of 2 that leaves rank 0, and rank 3 if
there, outside: they must return at once and never be blocked); every rank builds every
rank's input from the same seeds, so each can compute the expected result locally. Each test
ends with a world barrier, so ranks outside the group wait for the members there.
"""

import pickle

import numpy as np
import pytest

import distgrad
import distgrad.distributed as dist
from distgrad.distributed import ReduceOp

pytestmark = pytest.mark.mpi(min_size=3)

MEMBERS = [1, 2]


@pytest.fixture(scope="module", autouse=True)
def world():
    dist.init_process_group(backend="mpi")
    yield
    dist.barrier()


@pytest.fixture(scope="module")
def pair():
    return dist.new_group(MEMBERS)


@pytest.fixture(autouse=True)
def in_step():
    yield
    dist.barrier()


def me():
    return dist.get_rank()


def value(rank, shape=(3, 4), dtype="float64", seed=0):
    rng = np.random.default_rng(100 * seed + rank)
    return (rng.integers(-4, 5, shape) / 2).astype(dtype)


def tensor(array):
    return distgrad.tensor(np.array(array))


def test_group_membership(pair):
    assert dist.get_world_size() >= 3
    assert dist.group.WORLD.size() == dist.get_world_size()
    assert dist.get_process_group_ranks(pair) == MEMBERS
    if me() in MEMBERS:
        assert dist.get_rank(pair) == MEMBERS.index(me())
        assert dist.get_world_size(pair) == 2
        assert pair.rank() == MEMBERS.index(me()) and pair.size() == 2
    else:
        assert dist.get_rank(pair) == -1 and dist.get_world_size(pair) == -1
    assert dist.get_global_rank(pair, 1) == 2 and dist.get_group_rank(pair, 2) == 1


@pytest.mark.parametrize("op", [ReduceOp.SUM, ReduceOp.MAX, ReduceOp.AVG])
@pytest.mark.parametrize("async_op", [False, True])
def test_all_reduce(pair, op, async_op):
    t = tensor(value(me()))
    work = dist.all_reduce(t, op, group=pair, async_op=async_op)
    if async_op and work is not None:
        work.wait()
    if me() in MEMBERS:
        stacked = np.stack([value(r) for r in MEMBERS])
        ref = {"SUM": stacked.sum(0), "MAX": stacked.max(0), "AVG": stacked.mean(0)}[op.name]
        np.testing.assert_array_equal(t.numpy(), ref)
    else:
        assert work is None
        np.testing.assert_array_equal(t.numpy(), value(me()))  # untouched outside the group


def test_broadcast_and_reduce(pair):
    t = tensor(value(me()))
    dist.broadcast(t, src=2, group=pair)
    np.testing.assert_array_equal(t.numpy(), value(2) if me() in MEMBERS else value(me()))
    t = tensor(value(me()))
    dist.reduce(t, dst=2, group=pair)
    expect = value(1) + value(2) if me() == 2 else value(me())
    np.testing.assert_array_equal(t.numpy(), expect)
    t = tensor(value(me()))
    dist.broadcast(t, group=pair, group_src=0)  # group rank 0 is world rank 1
    np.testing.assert_array_equal(t.numpy(), value(1) if me() in MEMBERS else value(me()))


def test_all_gather_variants(pair):
    out = [tensor(np.zeros((3, 4))) for _ in MEMBERS]
    dist.all_gather(out, tensor(value(me())), group=pair)
    flat = tensor(np.zeros((6, 4)))
    dist.all_gather_into_tensor(flat, tensor(value(me())), group=pair)
    if me() in MEMBERS:
        for r, t in zip(MEMBERS, out):
            np.testing.assert_array_equal(t.numpy(), value(r))
        np.testing.assert_array_equal(flat.numpy(), np.concatenate([value(r) for r in MEMBERS]))
    else:
        assert all((t.numpy() == 0).all() for t in out) and (flat.numpy() == 0).all()


def test_reduce_scatter_variants(pair):
    inputs = [tensor(value(me(), seed=s)) for s in range(2)]
    out = tensor(np.zeros((3, 4)))
    dist.reduce_scatter(out, inputs, group=pair)
    stacked = tensor(np.concatenate([value(me(), seed=s) for s in range(2)]))
    out2 = tensor(np.zeros((3, 4)))
    dist.reduce_scatter_tensor(out2, stacked, group=pair)
    if me() in MEMBERS:
        block = MEMBERS.index(me())
        expect = sum(value(r, seed=block) for r in MEMBERS)
        np.testing.assert_array_equal(out.numpy(), expect)
        np.testing.assert_array_equal(out2.numpy(), expect)


def test_gather_scatter(pair):
    gathered = [tensor(np.zeros((3, 4))) for _ in MEMBERS] if me() == 1 else None
    dist.gather(tensor(value(me())), gathered, dst=1, group=pair)
    if me() == 1:
        for r, t in zip(MEMBERS, gathered):
            np.testing.assert_array_equal(t.numpy(), value(r))
    t = tensor(np.zeros((3, 4)))
    pieces = [tensor(value(100 + r)) for r in MEMBERS] if me() == 2 else None
    dist.scatter(t, pieces, src=2, group=pair)
    expect = value(100 + me()) if me() in MEMBERS else np.zeros((3, 4))
    np.testing.assert_array_equal(t.numpy(), expect)


def test_all_to_all(pair):
    # all_to_all_single, equal splits: rows [2i, 2i+1] go to group rank i
    inp = tensor(value(me(), shape=(4, 3)))
    out = tensor(np.zeros((4, 3)))
    dist.all_to_all_single(out, inp, group=pair)
    # unequal splits: group rank g sends g+1 rows to rank 0 and 2-g rows to rank 1
    g = MEMBERS.index(me()) if me() in MEMBERS else 0
    inp2 = tensor(value(me(), shape=(3, 2), seed=1))
    recv_rows = [1, 2] if g == 0 else [2, 1]
    out2 = tensor(np.zeros((sum(recv_rows), 2)))
    dist.all_to_all_single(out2, inp2, recv_rows, [g + 1, 2 - g], group=pair)
    # the list form, with pieces of different shapes
    ins = [tensor(np.full((j + 1,), 10 * me() + j, float)) for j in range(2)]
    outs = [tensor(np.zeros(g + 1)) for _ in range(2)]
    dist.all_to_all(outs, ins, group=pair)
    if me() in MEMBERS:
        expect = np.concatenate([value(r, shape=(4, 3))[2 * g : 2 * g + 2] for r in MEMBERS])
        np.testing.assert_array_equal(out.numpy(), expect)
        sent = {r: value(r, shape=(3, 2), seed=1) for r in MEMBERS}
        expect2 = np.concatenate(
            [sent[1][:1], sent[2][:2]] if g == 0 else [sent[1][1:], sent[2][2:]]
        )
        np.testing.assert_array_equal(out2.numpy(), expect2)
        for j, r in enumerate(MEMBERS):
            np.testing.assert_array_equal(outs[j].numpy(), np.full(g + 1, 10 * r + g, float))


def test_point_to_point(pair):
    n = dist.get_world_size()
    # a ring over the world, blocking send/recv in an order that cannot deadlock
    t = tensor(np.zeros(5))
    right, left = (me() + 1) % n, (me() - 1) % n
    if me() % 2 == 0:
        dist.send(tensor(value(me(), shape=(5,))), right)
        sender = dist.recv(t, left)
    else:
        sender = dist.recv(t, left)
        dist.send(tensor(value(me(), shape=(5,))), right)
    assert sender == left
    np.testing.assert_array_equal(t.numpy(), value(left, shape=(5,)))
    # isend/irecv inside the pair, receiving from any rank, with a tag
    if me() in MEMBERS:
        other = MEMBERS[1 - MEMBERS.index(me())]
        got = tensor(np.zeros(5))
        receiving = dist.irecv(got, group=pair, tag=7)
        sending = dist.isend(tensor(value(me(), shape=(5,), seed=3)), other, group=pair, tag=7)
        sending.wait()
        receiving.wait()
        np.testing.assert_array_equal(got.numpy(), value(other, shape=(5,), seed=3))
        assert pair.global_rank(receiving.source) == other
    else:
        assert dist.isend(tensor(np.zeros(1)), 1, group=pair) is None
        assert dist.recv(tensor(np.zeros(1)), 1, group=pair) == -1


def test_object_collectives(pair):
    objects = [None, None]
    dist.all_gather_object(objects, {"rank": me(), "data": list(range(me()))}, group=pair)
    listed = [None, None]
    if me() == 2:
        listed = [np.arange(3), "two"]
    dist.broadcast_object_list(listed, src=2, group=pair)
    gathered = [None, None] if me() == 1 else None
    dist.gather_object((me(), "x" * me()), gathered, dst=1, group=pair)
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, me() * 10)
    assert everyone == [10 * r for r in range(dist.get_world_size())]
    if me() in MEMBERS:
        assert objects == [{"rank": r, "data": list(range(r))} for r in MEMBERS]
        np.testing.assert_array_equal(listed[0], np.arange(3))
        assert listed[1] == "two"
    else:
        assert objects == [None, None] and listed == [None, None]
    if me() == 1:
        assert gathered == [(1, "x"), (2, "xx")]
    assert pickle.loads(pickle.dumps(ReduceOp.SUM)) is ReduceOp.SUM


def test_barriers(pair):
    dist.barrier(group=pair)
    work = dist.barrier(group=pair, async_op=True)
    assert (work is None) == (me() not in MEMBERS)
    if work is not None:
        work.wait()
    dist.monitored_barrier(group=pair, timeout=20)
    dist.monitored_barrier(timeout=20)


def test_sync_batchnorm_on_a_group(pair):
    """SyncBatchNorm over the pair matches BatchNorm over the pair's concatenated batches."""
    rng = np.random.default_rng(me())
    x = rng.normal(3.0, 2.0, (4, 3, 5))
    bn = dist.SyncBatchNorm(3, process_group=pair).double()
    if me() not in MEMBERS:
        return
    xt = distgrad.tensor(x, requires_grad=True)
    y = bn(xt)
    (y * y).sum().backward()
    both = np.concatenate([np.random.default_rng(r).normal(3.0, 2.0, (4, 3, 5)) for r in MEMBERS])
    ref_bn = distgrad.nn.BatchNorm1d(3).double()
    full = distgrad.tensor(both, requires_grad=True)
    ref_y = ref_bn(full)
    (ref_y * ref_y).sum().backward()
    i = MEMBERS.index(me())
    np.testing.assert_allclose(
        y.detach().numpy(), ref_y.detach().numpy()[4 * i : 4 * i + 4], rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        xt.grad.numpy(), full.grad.numpy()[4 * i : 4 * i + 4], rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(bn.running_mean.numpy(), ref_bn.running_mean.numpy(), rtol=1e-12)


def test_second_group_and_destroy():
    """A group created after another, and destroyed by its members."""
    last = dist.get_world_size() - 1
    other = dist.new_group([0, last])
    t = tensor(np.ones(2) * me())
    dist.all_reduce(t, group=other)
    if me() in (0, last):
        np.testing.assert_array_equal(t.numpy(), np.ones(2) * last)
        dist.destroy_process_group(other)
        with pytest.raises(RuntimeError, match="destroyed"):
            dist.all_reduce(t, group=other)


def test_data_parallel_on_a_group(pair):
    """DataParallel over the pair (``communicator=pair.communicator_for(...)``, the hook for
    process_group=) trains like one process on both members' rows; others are not involved."""
    if me() not in MEMBERS:
        return

    def make():
        distgrad.manual_seed(0)
        return distgrad.nn.Linear(3, 2).double()

    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    net = make()
    first = next(iter(net.parameters()))
    dp = dist.DataParallel(net, communicator=pair.communicator_for(first.array))
    opt = distgrad.optim.SGD(dp.parameters(), lr=0.1)
    i = MEMBERS.index(me())
    for _ in range(3):
        loss = ((dp(tensor(x[i::2])) - tensor(y[i::2])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ref = make()
    ref_opt = distgrad.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(3):
        loss = ((ref(tensor(x)) - tensor(y)) ** 2).mean()
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-12, atol=1e-12)
