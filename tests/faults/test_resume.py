"""Scenario 9: resume determinism. 2N steps straight vs N steps, a checkpoint, a restart in a
NEW process and N more: the parameters must be bit-identical. Mid-epoch and at epoch ends,
SGD with momentum and Adam, dropout, a shuffling DataLoader (or DistributedSampler), numpy's
and Python's global streams; on one process (killed after the checkpoint, losing the steps it
made after it) and on 2 ranks with DataParallel."""

import os
import sys

import numpy as np
import pytest

import distgrad as dg
from distgrad import checkpoint, nn, optim
from distgrad.data import DataLoader, TensorDataset
from tests import mpijob

from . import faultlib

SCRIPT = faultlib.WORKERS / "resume_train.py"

# (total steps, checkpoint step, optimizer, flags): 12 batches per epoch on one process
SINGLE = [
    (30, 17, "sgd", ["--crash"]),  # mid-epoch 1
    (30, 5, "adam", ["--crash"]),  # mid-epoch 0
    (30, 12, "adam", []),  # the last batch of epoch 0, saved inside the epoch
    (30, 12, "sgd", ["--epoch-end"]),  # saved after epoch 0 ended
    (30, 19, "adam", ["--crash", "--workers"]),
]  # DataLoader worker processes
# 6 batches per epoch per rank on 2 ranks
RANKS = [(20, 9, "adam", []), (20, 6, "sgd", ["--epoch-end"]), (20, 14, "sgd", [])]


def _check(job, n):
    assert job.orphans == 0, job.describe()
    assert job.returncode == 0, job.describe()
    assert job.stdout.count("RESUME-IDENTICAL") == n, job.describe()


@pytest.mark.multiprocess
@pytest.mark.parametrize("rep,case", list(enumerate(SINGLE)))
@pytest.mark.fault("9 resume determinism (1 process, restart in a new process)")
def test_resume_one_process(tmp_path, fault_record, rep, case):
    steps, half, opt, flags = case
    first = mpijob.run_command(
        [sys.executable, SCRIPT, "first", tmp_path, steps, half, opt, *flags], timeout=60
    )
    assert first.returncode == (-9 if "--crash" in flags else 0), first.describe()
    resumed = mpijob.run_command(
        [
            sys.executable,
            SCRIPT,
            "resume",
            tmp_path,
            steps,
            half,
            opt,
            *[f for f in flags if f == "--workers"],
        ],
        timeout=60,
    )
    fault_record(
        "9 resume determinism (1 process, restart in a new process)",
        rep,
        guard="bit-identical parameters",
        orphans=first.orphans + resumed.orphans,
    )
    assert first.orphans == 0, first.describe()
    _check(resumed, 1)


@mpijob.requires_mpi
@pytest.mark.multiprocess
@pytest.mark.parametrize("rep,case", list(enumerate(RANKS)))
@pytest.mark.fault("9 resume determinism (mpiexec -n 2, DataParallel)")
def test_resume_two_ranks(tmp_path, fault_record, rep, case):
    steps, half, opt, flags = case
    first = mpijob.run(SCRIPT, "first", tmp_path, steps, half, opt, "--dist", *flags, timeout=60)
    assert first.returncode == 0 and first.orphans == 0, first.describe()
    resumed = mpijob.run(SCRIPT, "resume", tmp_path, steps, half, opt, "--dist", timeout=60)
    fault_record(
        "9 resume determinism (mpiexec -n 2, DataParallel)",
        rep,
        guard="bit-identical parameters",
        orphans=first.orphans + resumed.orphans,
    )
    _check(resumed, 2)


# ---- the API, in this process -----------------------------------------------------------------
def _step(model, opt, sched):
    model(dg.randn(4, 3)).pow(2).sum().backward()
    opt.step()
    opt.zero_grad()
    sched.step()


def _arrays(*objs):
    out = [p.detach().numpy().copy() for p in objs[0].parameters()]
    return out + [v.numpy().copy() for s in objs[1].state.values() for v in s.values()]


def test_manager_round_trip_and_keep(tmp_path):
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
    ckpt = checkpoint.CheckpointManager(
        tmp_path / "run", model=model, optimizer=opt, scheduler=sched, keep=2
    )
    assert ckpt.restore() is None and ckpt.latest() is None
    for step in (1, 2, 3):
        _step(model, opt, sched)
        ckpt.save(step, epoch=step // 2, seed=7, extra={"loss": 0.5 * step, "best": dg.ones(2)})
    assert sorted(os.listdir(tmp_path / "run")) == [
        ".lock",  # the manager's directory lock, held until close()
        "LATEST",
        "ckpt-000000002",
        "ckpt-000000003",
    ]
    want, lr, last = _arrays(model, opt), opt.param_groups[0]["lr"], sched.last_epoch
    _step(model, opt, sched)
    _step(model, opt, sched)
    state = ckpt.restore()
    assert (state.step, state.epoch, state.seed, state.extra["loss"]) == (3, 1, 7, 1.5)
    assert np.array_equal(state.extra["best"].numpy(), np.ones(2, np.float32))
    assert state.path == ckpt.latest() and state.world_size == 1 and state.batches_done is None
    assert all(np.array_equal(a, b) for a, b in zip(_arrays(model, opt), want))
    assert opt.param_groups[0]["lr"] == lr and sched.last_epoch == last


def test_fallback_then_a_lower_step_becomes_the_newest(tmp_path):
    root, model = str(tmp_path / "run"), nn.Linear(3, 2)
    for step in (5, 10):
        checkpoint.save(root, model=model, step=step)
    with open(os.path.join(root, "ckpt-000000010", "model.safetensors"), "r+b") as f:
        f.truncate(20)
    with pytest.warns(RuntimeWarning, match="fell back"):
        assert checkpoint.load(root, model=model, fallback=True).step == 5
    checkpoint.save(root, model=model, step=6)  # the run goes on from step 5
    assert sorted(os.listdir(root)) == ["LATEST", "ckpt-000000005", "ckpt-000000006"]
    assert checkpoint.load(root, model=model).step == 6
    assert checkpoint.load(os.path.join(root, "ckpt-000000005"), model=model).step == 5


@pytest.mark.parametrize("batch_size", [3, None])
def test_resumable_loader_replays_the_rest_of_the_epoch(batch_size):
    def fresh():
        dg.manual_seed(0)
        return checkpoint.ResumableLoader(
            DataLoader(TensorDataset(dg.arange(10)), batch_size=batch_size, shuffle=True)
        )

    def epochs(loader, n):
        return [[b[0].tolist() for b in loader] for _ in range(n)]

    straight = epochs(fresh(), 3)
    loader = fresh()
    iterator = iter(loader)
    head = [next(iterator)[0].tolist() for _ in range(2)]
    state, rng = loader.state_dict(), dg.get_rng_state()
    resumed = fresh()
    dg.set_rng_state(rng)
    resumed.load_state_dict(state)
    assert state["batches_done"] == 2 and len(loader) == len(straight[0])
    assert [head + epochs(resumed, 1)[0]] + epochs(resumed, 2) == straight
