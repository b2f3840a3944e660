"""A tiny float64 training run that saves or resumes a distributed checkpoint (DCP).

``python dcp_train.py PHASE LAYOUT ROOT OUT``: PHASE ``save`` trains ``SAVE_AT`` steps and
saves; ``load`` loads ROOT's checkpoint into LAYOUT on this many ranks and trains to ``TOTAL``
steps; ``refuse`` (expects ROOT to be damaged) checks that the load raises CheckpointError and
changes nothing. LAYOUT: ``ddp`` (DistributedDataParallel + Adam), ``zero1``
(DistributedDataParallel + ZeroRedundancyOptimizer(Adam)), ``zero2``/``zero3`` (fully_shard on
every Linear and the root, reshard_after_forward False/True). The global batch is always
``GLOBAL`` samples of one DistributedSampler order (per-rank batch GLOBAL / world), so every
layout and world size trains on the same global batches. Writes OUT/seen-<phase>-<rank>.json
(the sample indices of each step) and, on rank 0, OUT/params-<phase>.npz (whole parameters)."""

import json
import os
import sys

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.distributed.checkpoint as dcp
import distgrad.nn as nn
import distgrad.nn.functional as F
from distgrad.checkpoint import ResumableLoader
from distgrad.data import DataLoader, DistributedSampler, TensorDataset
from distgrad.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from distgrad.distributed.optim import ZeroRedundancyOptimizer

distgrad.set_default_dtype(distgrad.float64)
dist.init()
W, R = dist.world_size(), dist.rank()
phase, layout, root, out = sys.argv[1:5]
N, GLOBAL, SAVE_AT, TOTAL = 48, 12, 2, 7  # 4 steps per epoch: the resume crosses an epoch


def data():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((N, 5)), rng.standard_normal((N, 3))
    return TensorDataset(distgrad.tensor(x), distgrad.tensor(y), distgrad.tensor(np.arange(N)))


def build(layout):
    distgrad.manual_seed(11)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    if layout in ("zero2", "zero3"):
        from distgrad.distributed.fsdp import fully_shard

        for sub in (model[0], model[2]):
            fully_shard(sub, reshard_after_forward=layout == "zero3")
        wrapped = fully_shard(model, reshard_after_forward=layout == "zero3")
        opt = distgrad.optim.Adam(model.parameters(), lr=0.05)
    else:
        wrapped = dist.DistributedDataParallel(model)
        if layout == "zero1":
            opt = ZeroRedundancyOptimizer(
                wrapped.parameters(), optimizer_class=distgrad.optim.Adam, lr=0.05
            )
        else:
            opt = distgrad.optim.Adam(wrapped.parameters(), lr=0.05)
    sampler = DistributedSampler(data(), shuffle=True, seed=5, drop_last=True)
    loader = ResumableLoader(DataLoader(data(), batch_size=GLOBAL // W, sampler=sampler))
    return model, wrapped, opt, loader


def state(model, wrapped, opt, loader, meta):
    msd, osd = get_state_dict(wrapped, opt)
    return {"model": msd, "optim": osd, "loader": loader, "rng": dcp.RNGState(), "meta": meta}


def whole(wrapped):
    sd = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True))
    return {k: v.detach().numpy().copy() for k, v in sd.items()}


model, wrapped, opt, loader = build(layout)
meta = {"step": 0, "epoch": 0}
if phase == "refuse":  # ROOT: damaged checkpoints, comma-separated; each must be refused
    before = whole(wrapped)
    for damaged in root.split(","):
        sd = state(model, wrapped, opt, loader, meta)
        snap = {k: v.to_local().numpy().copy() for k, v in sd["model"].items()}
        try:
            dcp.load(sd, checkpoint_id=damaged)
        except dcp.CheckpointError as exc:
            print(f"REFUSED {os.path.basename(damaged)} rank {R}: {exc}", flush=True)
        else:
            raise SystemExit(f"rank {R}: damaged checkpoint {damaged} was loaded")
        now = {k: v.to_local().numpy() for k, v in sd["model"].items()}
        assert all(np.array_equal(snap[k], now[k]) for k in snap), "the state changed"
        assert sd["meta"] == {"step": 0, "epoch": 0}, sd["meta"]
    assert all(np.array_equal(before[k], v) for k, v in whole(wrapped).items())
    print(f"UNCHANGED rank {R}", flush=True)
    raise SystemExit(0)
if phase == "load":
    sd = state(model, wrapped, opt, loader, meta)
    dcp.load(sd, checkpoint_id=root)
    set_state_dict(wrapped, opt, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    meta = sd["meta"]
seen = []
step, epoch = meta["step"], meta["epoch"]
while step < TOTAL:
    loader.sampler.set_epoch(epoch)
    for x, y, idx in loader:
        loss = F.mse_loss(wrapped(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        seen.append([int(i) for i in idx.numpy()])
        if phase == "save" and step == SAVE_AT:
            meta = {"step": step, "epoch": epoch}
            dcp.save(state(model, wrapped, opt, loader, meta), checkpoint_id=root)
            step = TOTAL
        if step == TOTAL:
            break
    else:
        epoch += 1
with open(os.path.join(out, f"seen-{phase}-{layout}-{W}-{R}.json"), "w") as f:
    json.dump(seen, f)
params = whole(wrapped)
if R == 0:
    np.savez(os.path.join(out, f"params-{phase}-{layout}-{W}.npz"), **params)
print(f"OK rank {R} step {step}", flush=True)
