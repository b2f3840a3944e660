"""distgrad.distributed.checkpoint over real MPI processes: a checkpoint saved on 4 ranks with
ZeRO-3 loads on 1, 2 and 3 ranks as DataParallel, ZeRO-1 and ZeRO-3, and training continues
exactly as an uninterrupted single process on the same global batches (float64, 1e-12), every
sample of the epoch seen once across the resume; damaged, missing and mismatched pieces are
refused naming the file and the tensor, with nothing changed."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import distgrad
import distgrad.nn as nn
import distgrad.nn.functional as F
from tests import mpijob

pytestmark = mpijob.requires_mpi
WORKER = Path(__file__).resolve().parent / "workers" / "dcp_train.py"
N, GLOBAL, SAVE_AT, TOTAL, TOL = 48, 12, 2, 7, 1e-12


def reference() -> tuple[dict, list]:
    """One process, no checkpoint: TOTAL steps on the global batches of the sampler's order."""
    distgrad.set_default_dtype(distgrad.float64)
    try:
        rng = np.random.default_rng(3)
        x, y = rng.standard_normal((N, 5)), rng.standard_normal((N, 3))
        distgrad.manual_seed(11)
        model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
        opt = distgrad.optim.Adam(model.parameters(), lr=0.05)
        batches = []
        for epoch in range(2):
            order = np.random.default_rng(5 + epoch).permutation(N)
            batches += [order[k : k + GLOBAL] for k in range(0, N, GLOBAL)]
        for idx in batches[:TOTAL]:
            loss = F.mse_loss(model(distgrad.tensor(x[idx])), distgrad.tensor(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        params = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        return params, [sorted(b.tolist()) for b in batches[:TOTAL]]
    finally:
        distgrad.set_default_dtype(distgrad.float32)


def seen(out: Path, phase: str, layout: str, world: int) -> list:
    """The global batches (sorted sample indices) of each step, from every rank's record."""
    per_rank = [
        json.loads((out / f"seen-{phase}-{layout}-{world}-{r}.json").read_text())
        for r in range(world)
    ]
    return [sorted(i for rank in per_rank for i in rank[s]) for s in range(len(per_rank[0]))]


_SAVED: dict = {}


def _save(tmp_path_factory, layout: str, world: int):
    """One save job per (layout, world), shared by the tests of this module."""
    if (layout, world) not in _SAVED:
        out = tmp_path_factory.mktemp(f"dcp-{layout}-{world}")
        root = out / "root"
        mpijob.run(WORKER, "save", layout, str(root), str(out), n=world, timeout=240).check()
        _SAVED[(layout, world)] = root, out
    return _SAVED[(layout, world)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return _save(tmp_path_factory, "zero3", 4)


@pytest.mark.parametrize(
    ("saved_as", "world", "layout"),
    [
        (("zero3", 4), 1, "ddp"),
        (("zero3", 4), 2, "zero1"),
        (("zero3", 4), 3, "zero3"),
        (("zero1", 3), 4, "zero2"),
        (("zero1", 3), 2, "ddp"),
    ],
)
def test_resharded_resume_equals_uninterrupted_run(tmp_path_factory, saved_as, world, layout):
    root, out = _save(tmp_path_factory, *saved_as)
    mpijob.run(WORKER, "load", layout, str(root), str(out), n=world, timeout=240).check()
    want, batches = reference()
    got = np.load(out / f"params-load-{layout}-{world}.npz")
    for name, value in want.items():
        assert np.max(np.abs(got[name] - value)) <= TOL, (name, saved_as, layout, world)
    before, after = seen(out, "save", *saved_as), seen(out, "load", layout, world)
    assert before + after == batches  # the same global batches, in order
    epoch0 = [i for b in (before + after)[: N // GLOBAL] for i in b]
    assert sorted(epoch0) == list(range(N))  # every sample of the epoch exactly once


def _resign(path: Path) -> None:
    """Recompute a checkpoint's manifest after editing a file (a consistent but wrong one)."""
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest.pop("manifest_sha256")
    for name, info in manifest["files"].items():
        blob = (path / name).read_bytes()
        info.update(sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob))
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest["manifest_sha256"] = hashlib.sha256(canonical).hexdigest()
    (path / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def test_damaged_missing_and_mismatched_pieces_are_refused(saved, tmp_path):
    root, _ = saved
    roots = {}
    for case in ("damaged", "missing", "mismatch"):
        copy = tmp_path / case
        shutil.copytree(root, copy)
        roots[case] = copy
        (ckpt,) = [p for p in copy.iterdir() if p.name.startswith("ckpt-")]
        if case == "damaged":
            blob = bytearray((ckpt / "__1_0.distcp").read_bytes())
            blob[-3] ^= 0x10
            (ckpt / "__1_0.distcp").write_bytes(bytes(blob))
        elif case == "missing":
            os.unlink(ckpt / "__2_0.distcp")
        else:
            meta = json.loads((ckpt / ".metadata").read_text())
            meta["tensors"][json.dumps(["model", "0.weight"])]["shape"] = [7, 6]
            (ckpt / ".metadata").write_text(json.dumps(meta))
            _resign(ckpt)
    job = mpijob.run(
        WORKER,
        "refuse",
        "zero3",
        ",".join(str(r) for r in roots.values()),
        str(tmp_path),
        n=2,
        timeout=240,
    ).check()
    lines = [ln for ln in job.stdout.splitlines() if ln.startswith("REFUSED")]
    assert len(lines) == 6, job.stdout
    text = {case: [ln for ln in lines if ln.startswith(f"REFUSED {case} ")] for case in roots}
    assert any(
        "__1_0.distcp" in ln and "checksum mismatch" in ln and "model.0.weight" in ln
        for ln in text["damaged"]
    ), text["damaged"]
    assert any(
        "__2_0.distcp" in ln and "missing" in ln and "model." in ln for ln in text["missing"]
    ), text["missing"]
    assert all(
        ".metadata" in ln and "model.0.weight" in ln and "(7, 6)" in ln for ln in text["mismatch"]
    ), text["mismatch"]
    assert job.stdout.count("UNCHANGED") == 2


def test_a_save_failing_on_one_rank_leaves_the_previous_checkpoint(tmp_path):
    """Bad state, a write error (ENOSPC injected) and the same under async_save, each on rank 1
    of 2: every rank raises, LATEST and the previous checkpoint stay, no staging is left."""
    worker = WORKER.parent / "dcp_failures.py"
    job = mpijob.run(worker, str(tmp_path / "root"), n=2, timeout=240).check()
    for case in ("bad-state", "write-error", "async-write-error"):
        assert job.stdout.count(f"OK {case} rank") == 2, job.stdout
