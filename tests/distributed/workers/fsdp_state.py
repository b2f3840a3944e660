"""Sharded state dicts on real ranks: ``python fsdp_state.py STAGE`` (1: DDP +
ZeroRedundancyOptimizer; 2, 3: fully_shard with reshard_after_forward False / True), float64.

After 3 Adam steps against one process training on every rank's batch: the sharded values
(``ShardedTensor``: full shape, this rank's rows, ``full_tensor()``) of the model (fully_shard)
and of the optimizer state equal the single process's to 1e-12, and the ranks' rows tile dim 0
once; a fresh sharded model/optimizer loads its state from whole tensors / covering pieces (what
a resharding checkpoint hands it) and then trains 2 more steps equal to the single process; a
piece that does not cover the rank's rows is refused with nothing changed. With a directory as
second argument (fully_shard), the model's ``state_dict()`` also goes through
``distgrad.distributed.checkpoint`` save/load (into whole tensors and back into shards).
Prints ``OK``.
"""

import pickle
import sys

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
import distgrad.optim
from distgrad.distributed.fsdp import ShardedTensor, fully_shard
from distgrad.distributed.optim import ZeroRedundancyOptimizer

distgrad.set_default_dtype(distgrad.float64)
dist.init()
W, R = dist.world_size(), dist.rank()
stage = int(sys.argv[1])
TOL = 1e-12
comm = dist.get_communicator()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(7, 15)
        self.head = nn.Linear(15, 7)
        self.scale = nn.Parameter(distgrad.tensor(1.5))  # 0-d: one row

    def forward(self, x):
        return self.head(distgrad.tanh(self.body(x))) * self.scale


def make(seed):
    distgrad.manual_seed(seed)
    return Net()


def batch(step, rank):
    rng = np.random.default_rng(100 * step + rank)
    return distgrad.tensor(rng.standard_normal((3, 7)))


def sharded(model):
    """(module to call, optimizer) for this stage."""
    if stage == 1:
        ddp = dist.DistributedDataParallel(model)
        return ddp, ZeroRedundancyOptimizer(ddp.parameters(), distgrad.optim.Adam, lr=1e-2)
    fully_shard(model.body, reshard_after_forward=stage == 3)
    fully_shard(model, reshard_after_forward=stage == 3)
    return model, distgrad.optim.Adam(model.parameters(), lr=1e-2)


def train(module, opt, ref, ref_opt, steps):
    for step in steps:
        module(batch(step, R)).square().mean().backward()
        (sum(ref(batch(step, r)).square().mean() for r in range(W)) / W).backward()
        for o in (opt, ref_opt):
            o.step()
            o.zero_grad()


def close(a, b, what):
    diff = float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0
    assert diff <= TOL, f"rank {R}: {what} differs by {diff}"


def check_rows_tile(name, value):
    every = comm.allgather_object(value.rows)
    d0 = value.full_shape[0] if value.full_shape else 1
    covered = sorted(r for r in every if r[1] > r[0])
    assert covered[0][0] == 0 and covered[-1][1] == d0, (name, every)
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:])), (name, every)


def full_params(model):
    return {
        n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().numpy().copy()
        for n, p in model.named_parameters()
    }


model, ref = make(7), make(7)
module, opt = sharded(model)
ref_opt = distgrad.optim.Adam(ref.parameters(), lr=1e-2)
train(module, opt, ref, ref_opt, range(3))
ref_params = dict(ref.named_parameters())
ref_state = {n: ref_opt.state[p] for n, p in ref_params.items()}
names = list(ref_params)

if stage == 1:
    # optimizer state: ShardedTensors of this rank's rows, equal to the single process's
    local = opt.sharded_state_dict()
    for i, name in enumerate(names):
        for key in ("exp_avg", "exp_avg_sq"):
            if i not in local["state"]:
                assert opt.shard_rows(i)[0] == opt.shard_rows(i)[1], (i, opt.shard_rows(i))
                piece = ShardedTensor(
                    np.zeros((0, *ref_params[name].shape[1:])),
                    ref_params[name].shape,
                    opt.shard_rows(i),
                    comm,
                )
            else:
                piece = local["state"][i][key]
            assert isinstance(piece, ShardedTensor) and piece.rows == opt.shard_rows(i)
            assert piece.full_shape == tuple(ref_params[name].shape)
            close(piece.full_tensor().numpy(), ref_state[name][key].numpy(), f"{name} {key}")
            check_rows_tile(name, piece)
    # a fresh ZeRO optimizer loads pieces assembled from the whole state (no rank/world keys)
    fresh = ZeroRedundancyOptimizer(module.parameters(), distgrad.optim.Adam, lr=1e-2)
    pieces = {"param_groups": local["param_groups"], "state": {}}
    for i, name in enumerate(names):
        start, stop = fresh.shard_rows(i)
        whole = ref_state[name]
        shape = tuple(ref_params[name].shape)
        d0 = shape[0] if shape else 1
        pieces["state"][i] = {
            "step": whole["step"],
            **{
                k: ShardedTensor(
                    whole[k].numpy().reshape(d0, -1)[start:stop].reshape(stop - start, *shape[1:]),
                    shape,
                    (start, stop),
                )
                for k in ("exp_avg", "exp_avg_sq")
            },
        }
    wrong = pickle.loads(pickle.dumps(pieces))  # pickling keeps full_shape and rows
    assert wrong["state"][0]["exp_avg"].rows == pieces["state"][0]["exp_avg"].rows
    w = wrong["state"][0]["exp_avg"]
    if w.rows[1] > w.rows[0]:  # a piece one row short of this rank's rows is refused
        wrong["state"][0]["exp_avg"] = ShardedTensor(
            w.array[1:], w.full_shape, (w.rows[0] + 1, w.rows[1])
        )
        before = fresh.sharded_state_dict()
        try:
            fresh.load_sharded_state_dict(wrong)
            raise AssertionError("a piece not covering the rank's rows was loaded")
        except ValueError as error:
            assert "needs rows" in str(error), error
        assert fresh.sharded_state_dict()["state"].keys() == before["state"].keys()
    fresh.load_sharded_state_dict(pieces)
    train(module, fresh, ref, ref_opt, range(3, 5))
else:
    sd = model.state_dict()
    for name in names:
        value = sd[name]
        assert isinstance(value, ShardedTensor), (name, type(value))
        assert value.full_shape == tuple(ref_params[name].shape), name
        close(value.full_tensor().numpy(), ref_params[name].detach().numpy(), name)
        check_rows_tile(name, value)
        state = opt.state[dict(model.named_parameters())[name]]
        for key in ("exp_avg", "exp_avg_sq"):
            piece = dict(model.named_parameters())[name].local_view(state[key])
            assert piece.rows == value.rows
            close(piece.full_tensor().numpy(), ref_state[name][key].numpy(), f"{name} {key}")
    if len(sys.argv) > 2:  # DCP: save the sharded state dict as torch users do with FSDP2
        import distgrad.distributed.checkpoint as dcp

        dcp.save({"model": sd}, checkpoint_id=sys.argv[2])
        whole = {"model": {n: distgrad.tensor(np.zeros(ref_params[n].shape)) for n in names}}
        dcp.load(whole, checkpoint_id=sys.argv[2])  # every rank reads whole tensors
        for name in names:
            close(whole["model"][name].numpy(), ref_params[name].detach().numpy(), f"DCP {name}")
        fresh = make(3)
        sharded(fresh)
        dcp.load({"model": fresh.state_dict()}, checkpoint_id=sys.argv[2])  # in place, by rows
        got = full_params(fresh)
        for name in names:
            close(got[name], ref_params[name].detach().numpy(), f"DCP into shards {name}")
    # the same layout's state dict into a model with other weights
    other, _ = make(99), None
    other_module, other_opt = sharded(other)
    other.load_state_dict(sd)
    got = full_params(other)
    for name in names:
        close(got[name], ref_params[name].detach().numpy(), f"loaded {name}")
    # a piece that does not cover this rank's rows: refused, nothing changed
    bad = dict(sd)
    body = sd["body.weight"]
    bad["body.weight"] = ShardedTensor(
        body.array[1:], body.full_shape, (body.rows[0] + 1, body.rows[1])
    )
    bad["head.bias"] = distgrad.zeros(7)  # whole: would be fine on its own
    third, _ = make(5), None
    third_module, third_opt = sharded(third)
    before = full_params(third)
    try:
        third.load_state_dict(bad)
        raise AssertionError("a piece not covering the rank's rows was loaded")
    except RuntimeError as error:
        assert "needs rows" in str(error) and "body.weight" in str(error), error
    after = full_params(third)
    assert all(np.array_equal(before[n], after[n]) for n in names), "a failed load changed state"
    # whole tensors (a consolidated checkpoint) into the sharded model, optimizer state by rows
    third.load_state_dict({n: p.detach() for n, p in ref.state_dict().items()})
    shards = dict(third.named_parameters())
    state = {}
    for index, name in enumerate(names):
        p = shards[name]
        start, stop = p.local_rows
        entry = {"step": ref_state[name]["step"]}
        for key in ("exp_avg", "exp_avg_sq"):
            buf = distgrad.zeros(*p.shape)
            whole = ref_state[name][key].numpy()
            d0 = whole.shape[0] if whole.ndim else 1
            p.local_view(buf).array[...] = whole.reshape(d0, -1)[start:stop].reshape(
                p.local_view(buf).shape
            )
            entry[key] = buf
        state[index] = entry
    groups = third_opt.state_dict()["param_groups"]
    third_opt.load_state_dict({"state": state, "param_groups": groups})
    module, opt = third_module, third_opt
    model = third
    train(module, opt, ref, ref_opt, range(3, 5))

final = full_params(module.module if stage == 1 else model)
for name in names:
    close(final[name], ref_params[name].detach().numpy(), f"after loading, {name}")
print("OK", flush=True)
