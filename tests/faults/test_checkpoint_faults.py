"""Scenario 7: corrupted checkpoints and interrupted saves.

For every fault the previous good checkpoint must still load and verify (bit for bit), a
failed load must change nothing, and no damaged or half-written checkpoint may ever be loaded
(a "false accept"). Damage is done with independent code: truncation at several offsets,
flipped bits in header, data and manifest, a missing manifest or file, wrong checksums in the
manifest (with and without a re-signed manifest), a pickle and a torch-style zip in place of a
checkpoint; SIGKILL at every phase of a save (in a subprocess); a full disk (ENOSPC injected
into the writes at several points, and a real 1 MiB tmpfs where it can be mounted), fsync
errors; and on 2 ranks, failures seen by one rank only."""

import errno
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
import zipfile

import numpy as np
import pytest

import distgrad as dg
from distgrad import checkpoint, nn, optim
from distgrad.checkpoint import CheckpointError
from tests import mpijob

from . import faultlib

MODEL = "ckpt-000000002/model.safetensors"
OPTIM = "ckpt-000000002/optimizer.safetensors"
MANIFEST = "ckpt-000000002/MANIFEST.json"


class Run:
    """A small model + Adam, trained one step at a time."""

    def __init__(self, width=32, seed=0):
        dg.manual_seed(seed)
        self.width = width
        self.model = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 4))
        self.opt = optim.Adam(self.model.parameters(), lr=0.1)

    def step(self):
        self.model(dg.randn(4, self.width)).pow(2).sum().backward()
        self.opt.step()
        self.opt.zero_grad()
        return self

    def params(self):
        return {n: p.detach().numpy().copy() for n, p in self.model.named_parameters()}

    def opt_arrays(self):
        return [v.numpy().copy() for s in self.opt.state.values() for v in s.values()]

    def save(self, root, step, **kwargs):
        return checkpoint.save(root, model=self.model, optimizer=self.opt, step=step, **kwargs)

    def load(self, root, **kwargs):
        return checkpoint.load(root, model=self.model, optimizer=self.opt, **kwargs)


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def visible_checkpoints_verify(root):
    """Every checkpoint directory a loader could pick verifies (none is half-written)."""
    for name in os.listdir(root):
        if name.startswith("ckpt-"):
            checkpoint.verify(os.path.join(root, name))
    return True


@pytest.fixture
def saved(tmp_path):
    """A root with committed checkpoints of steps 1 and 2; their parameters by step."""
    root, run, refs = str(tmp_path / "ckpt"), Run(), {}
    for step in (1, 2):
        refs[step] = run.step().params()
        run.save(root, step)
    return root, refs


# ---- damage, done independently of distgrad ---------------------------------------------------
def header_size(path):
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def truncate(rel, where):
    def damage(root):
        path = os.path.join(root, rel)
        size, header = os.path.getsize(path), header_size(path)
        at = {
            "empty": 0,
            "in length": 3,
            "after length": 8,
            "mid header": header // 2,
            "mid data": (header + size) // 2,
            "last byte": size - 1,
        }[where]
        os.truncate(path, at)

    return damage


def flip(rel, where, bit):
    def damage(root):
        path = os.path.join(root, rel)
        size = os.path.getsize(path)
        if rel.endswith(".json"):
            at = int(size * where)
        else:
            header = header_size(path)
            at = int(8 + (header - 8) * where) if where < 1 else header + (size - header) // 3
        with open(path, "r+b") as f:
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ (1 << bit)]))

    return damage


def canonical_sha(manifest):
    return hashlib.sha256(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def edit_manifest(change, resign=True, rel=MANIFEST):
    def damage(root):
        path = os.path.join(root, rel)
        with open(path) as f:
            manifest = json.load(f)
        manifest.pop("manifest_sha256")
        change(manifest, os.path.dirname(path))
        manifest["manifest_sha256"] = canonical_sha(manifest) if resign else "0" * 64
        with open(path, "w") as f:
            json.dump(manifest, f)

    return damage


def replace_file(rel, payload_fn):
    """Put ``payload_fn(root)`` in place of ``rel`` and re-sign the manifest to match (a
    consistent forgery: only the file's own format can give it away)."""

    def change(manifest, directory):
        path = os.path.join(directory, os.path.basename(rel))
        with open(path, "wb") as f:
            f.write(payload_fn(directory))
        with open(path, "rb") as f:
            blob = f.read()
        manifest["files"][os.path.basename(rel)] = {
            "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob),
        }

    return edit_manifest(change)


class Evil:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(directory):
    return pickle.dumps({"weight": Evil(os.path.join(directory, "PWNED"))})


def torch_zip(directory):
    path = os.path.join(directory, "torch.zip")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", evil_pickle(directory))
        z.writestr("archive/version", "3\n")
    with open(path, "rb") as f:
        return f.read()


def remove(rel):
    def damage(root):
        path = os.path.join(root, rel)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    return damage


def write(rel, data):
    def damage(root):
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)

    return damage


def wrong_sha(manifest, _):
    manifest["files"]["model.safetensors"]["sha256"] = "ab" * 32


def wrong_size(manifest, _):
    manifest["files"]["optimizer.safetensors"]["bytes"] += 1


# (scenario, damage, words the error must contain, guard, step a fallback load must give)
CASES = [
    *[
        (
            "7 truncated checkpoint file",
            truncate(MODEL, w),
            ["model.safetensors", "truncated"],
            "manifest size",
            1,
        )
        for w in ("empty", "in length", "after length", "mid header", "mid data", "last byte")
    ],
    (
        "7 truncated checkpoint file",
        truncate(OPTIM, "mid data"),
        ["optimizer.safetensors", "truncated"],
        "manifest size",
        1,
    ),
    *[
        (
            "7 flipped bit in header",
            flip(MODEL, where, bit),
            ["model.safetensors", "checksum mismatch", "corrupted"],
            "file sha256",
            1,
        )
        for where, bit in ((0.0, 0), (0.3, 5), (0.6, 1), (0.99, 7))
    ],
    *[
        (
            "7 flipped bit in data",
            flip(rel, 1, bit),
            [os.path.basename(rel), "checksum mismatch"],
            "file sha256",
            1,
        )
        for rel, bit in ((MODEL, 0), (MODEL, 6), (OPTIM, 3))
    ],
    *[
        (
            "7 flipped bit in manifest",
            flip(MANIFEST, where, 2),
            ["MANIFEST.json"],
            "manifest sha256",
            1,
        )
        for where in (0.2, 0.5, 0.9)
    ],
    (
        "7 missing manifest or file",
        remove(MANIFEST),
        ["has no MANIFEST.json", "not completely written"],
        "manifest presence",
        1,
    ),
    (
        "7 missing manifest or file",
        remove(OPTIM),
        ["optimizer.safetensors", "missing"],
        "manifest file list",
        1,
    ),
    (
        "7 missing manifest or file",
        remove("ckpt-000000002"),
        ["ckpt-000000002", "directory is missing"],
        "manifest presence",
        1,
    ),
    (
        "7 wrong checksum in manifest",
        edit_manifest(wrong_sha, resign=False),
        ["MANIFEST.json", "manifest checksum mismatch"],
        "manifest sha256",
        1,
    ),
    (
        "7 wrong checksum in manifest",
        edit_manifest(wrong_sha),
        ["model.safetensors", "checksum mismatch"],
        "file sha256",
        1,
    ),
    (
        "7 wrong checksum in manifest",
        edit_manifest(wrong_size),
        ["optimizer.safetensors", "the manifest says"],
        "manifest size",
        1,
    ),
    (
        "7 pickle or zip renamed as checkpoint",
        replace_file(MODEL, evil_pickle),
        ["model.safetensors", "pickle", "never unpickles"],
        "safetensors reader",
        1,
    ),
    (
        "7 pickle or zip renamed as checkpoint",
        replace_file(MODEL, torch_zip),
        ["model.safetensors", "zip archive"],
        "safetensors reader",
        1,
    ),
    (
        "7 pickle or zip renamed as checkpoint",
        write(MODEL, evil_pickle(".")),
        ["model.safetensors", "the manifest says", "pickle"],
        "manifest size",
        1,
    ),
    # a damaged pointer: every committed checkpoint is intact, so fallback takes the newest
    (
        "7 damaged LATEST pointer",
        write("LATEST", b'{"checkpoint": "ckpt-000000002", "seq'),
        ["LATEST", "pointer is corrupted"],
        "pointer JSON",
        2,
    ),
    (
        "7 damaged LATEST pointer",
        write("LATEST", pickle.dumps({"checkpoint": 2})),
        ["LATEST", "pointer is corrupted"],
        "pointer JSON",
        2,
    ),
]
REPS = [sum(c[0] == case[0] for c in CASES[:i]) for i, case in enumerate(CASES)]
IDS = [f"{case[0][2:].replace(' ', '_')}-{rep}" for case, rep in zip(CASES, REPS)]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_damaged_checkpoint_is_never_taken(saved, fault_record, index):
    scenario, damage, words, guard, fallback_step = CASES[index]
    rep = REPS[index]
    root, refs = saved
    damage(root)
    run = Run(seed=1).step()
    before, opt_before = run.params(), run.opt_arrays()
    start = time.perf_counter()
    try:
        run.load(root)
        error = None
    except CheckpointError as exc:
        error = exc
    took = time.perf_counter() - start
    unchanged = same(run.params(), before) and all(
        np.array_equal(a, b) for a, b in zip(run.opt_arrays(), opt_before)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = run.load(root, fallback=True)
    false_accepts = (error is None) + (fallback_step == 1 and state.step == 2)
    fault_record(scenario, rep, detection_s=took, guard=guard, false_accepts=false_accepts)
    assert error is not None, "the damaged checkpoint was loaded"
    assert all(w in str(error) for w in words), f"{words} not all in: {error}"
    assert unchanged, "a failed load changed the model or the optimizer"
    assert state.step == fallback_step and same(run.params(), refs[fallback_step])
    if fallback_step == 1:
        assert state.skipped and caught and "fell back" in str(caught[0].message)
    assert not os.path.exists(os.path.join(root, "ckpt-000000002", "PWNED"))


@pytest.mark.parametrize("kind", ["pickle", "zip"])
def test_pickle_or_zip_file_given_as_checkpoint(tmp_path, fault_record, kind):
    path = tmp_path / "model.pt"
    path.write_bytes(evil_pickle(str(tmp_path)) if kind == "pickle" else torch_zip(str(tmp_path)))
    run = Run()
    before = run.params()
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        run.load(str(path), fallback=True)
    fault_record(
        "7 pickle or zip renamed as checkpoint",
        10 + (kind == "zip"),
        detection_s=time.perf_counter() - start,
        guard="format sniff",
    )
    assert "is a file, not a checkpoint directory" in str(info.value)
    assert ("Python pickle" if kind == "pickle" else "zip archive") in str(info.value)
    assert same(run.params(), before) and not (tmp_path / "PWNED").exists()


def test_all_checkpoints_damaged(saved, fault_record):
    root, _ = saved
    flip(MODEL, 1, 0)(root)
    truncate("ckpt-000000001/optimizer.safetensors", "mid data")(root)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        Run().load(root, fallback=True)
    fault_record(
        "7 flipped bit in data", 9, detection_s=time.perf_counter() - start, guard="file sha256"
    )
    message = str(info.value)
    assert "no valid checkpoint" in message and "ckpt-000000002" in message
    assert "ckpt-000000001" in message and "truncated" in message


# ---- SIGKILL at each phase of a save ----------------------------------------------------------
EXPECTED = {
    "writing": (2, ".staging-"),
    "written": (2, ".staging-"),
    "synced": (2, "ckpt-000000003"),
    "pointer": (2, ".LATEST."),
    "prune": (3, ".trash-"),
}


@pytest.mark.multiprocess
@pytest.mark.parametrize("phase", checkpoint.PHASES)
def test_sigkill_during_save(tmp_path, fault_record, phase):
    assert set(EXPECTED) == set(checkpoint.PHASES)
    root, refs = tmp_path / "ckpt", tmp_path / "refs"
    refs.mkdir()
    job = mpijob.run_command(
        [sys.executable, faultlib.WORKERS / "ckpt_kill.py", root, refs, phase], timeout=60
    )
    want, leftover = EXPECTED[phase]
    run = Run(width=64, seed=5)
    state = run.load(str(root))
    ref = dg.load(str(refs / f"step-{want}.safetensors"))
    good = state.step == want and same(run.params(), {n: t.numpy() for n, t in ref.items()})
    fault_record(
        "7 SIGKILL at each phase of a save",
        checkpoint.PHASES.index(phase),
        guard="pointer commit" if want == 2 else "trash rename before delete",
        orphans=job.orphans,
        false_accepts=int(not good),
    )
    assert job.returncode == -9, job.describe()
    assert job.orphans == 0
    assert good, f"loaded step {state.step}, expected {want} with its exact parameters"
    assert any(n.startswith(leftover) for n in os.listdir(root)), os.listdir(root)
    assert visible_checkpoints_verify(root)
    # The next save cleans up what the killed one left, and commits normally.
    run.save(str(root), 4)
    names = sorted(os.listdir(root))
    assert not [n for n in names if n.startswith(".")], names
    assert names == ["LATEST", f"ckpt-00000000{want}", "ckpt-000000004"], names
    assert run.load(str(root)).step == 4


# ---- a full disk and failing fsyncs ----------------------------------------------------------
def _under(root):
    def check(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith(root)
        except OSError:
            return False

    return check


def _failed_save_keeps_previous(root, refs, run, scenario, rep, fault_record, guard):
    """Save step 3 expecting an OSError; the committed step 2 must still load exactly."""
    start = time.perf_counter()
    try:
        run.save(root, 3)
        error = None
    except OSError as exc:
        error = exc
    took = time.perf_counter() - start
    fresh = Run(seed=9)
    state = fresh.load(root)
    good = state.step == 2 and same(fresh.params(), refs[2])
    fault_record(scenario, rep, detection_s=took, guard=guard, false_accepts=int(not good))
    assert good
    return error


@pytest.mark.parametrize(
    "cut", ["start", "mid model", "end of model", "mid optimizer", "mid ranks", "manifest"]
)
def test_enospc_injected(saved, monkeypatch, fault_record, cut):
    root, refs = saved
    with open(os.path.join(root, MANIFEST)) as f:
        files = json.load(f)["files"]
    sizes = {
        n: files[n]["bytes"]
        for n in (
            "model.safetensors",
            "optimizer.safetensors",
            "meta.safetensors",
            "ranks.safetensors",
        )
    }
    ends = np.cumsum(list(sizes.values())).tolist()
    budget = [
        {
            "start": 0,
            "mid model": ends[0] // 2,
            "end of model": ends[0],
            "mid optimizer": (ends[0] + ends[1]) // 2,
            "mid ranks": (ends[2] + ends[3]) // 2,
            "manifest": ends[3] + 10,
        }[cut]
    ]
    real_write, under = os.write, _under(root)

    def write(fd, data):
        if under(fd):
            if budget[0] <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = memoryview(data)[: budget[0]]
            budget[0] -= len(data)
        return real_write(fd, data)

    run = Run().step().step().step()
    monkeypatch.setattr(os, "write", write)
    error = _failed_save_keeps_previous(
        root,
        refs,
        run,
        "7 full disk (ENOSPC injected)",
        ["start", "mid model", "end of model", "mid optimizer", "mid ranks", "manifest"].index(cut),
        fault_record,
        "staging dir + pointer commit",
    )
    assert error is not None and error.errno == errno.ENOSPC
    assert ".staging-ckpt-000000003" in error.filename, error.filename
    assert sorted(os.listdir(root)) == ["LATEST", "ckpt-000000001", "ckpt-000000002"]
    monkeypatch.setattr(os, "write", real_write)
    run.save(root, 3)  # space again: saving works and commits
    assert Run().load(root).step == 3


def _failing_fsync(root, fail_at):
    """os.fsync that fails (EIO) at its ``fail_at``-th call on a file under ``root``; the
    count of such calls is in ``.calls``."""
    real, under = os.fsync, _under(root)

    def fsync(fd):
        if under(fd):
            fsync.calls += 1
            if fsync.calls == fail_at:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd)

    fsync.calls = 0
    return fsync


def test_fsync_failure_at_every_call(tmp_path, monkeypatch, fault_record):
    """An fsync failing (EIO) at any point of a save raises; it leaves step 2 committed, or,
    for the last directory fsync (which only makes the pointer's rename durable), step 3
    committed and an error that says so."""
    real = os.fsync
    probe = _failing_fsync(str(tmp_path / "probe"), 0)
    monkeypatch.setattr(os, "fsync", probe)
    Run().save(str(tmp_path / "probe"), 1)
    assert probe.calls >= 9  # 5 files, manifest, staging dir, root, pointer (+ its directory)
    for k in range(1, probe.calls + 1):
        monkeypatch.setattr(os, "fsync", real)
        root, run, refs = str(tmp_path / f"root{k}"), Run(), {}
        for step in (1, 2):
            refs[step] = run.step().params()
            run.save(root, step)
        run.step()
        monkeypatch.setattr(os, "fsync", _failing_fsync(root, k))
        with pytest.raises(OSError) as err:
            run.save(root, 3)
        assert err.value.errno == errno.EIO
        committed = 3 if k == probe.calls else 2
        monkeypatch.setattr(os, "fsync", real)
        fresh = Run(seed=9)
        state = fresh.load(root)
        want = refs[2] if committed == 2 else run.params()
        good = state.step == committed and same(fresh.params(), want)
        fault_record(
            "7 fsync error (EIO injected)",
            k - 1,
            guard="pointer commit",
            false_accepts=int(not good),
        )
        assert good, (k, committed, state.step)
        assert visible_checkpoints_verify(root)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and a kernel that lets us mount; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root); ENOSPC is covered by injection")
    yield str(disk)
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_enospc_real_full_disk(tiny_disk, fault_record):
    root = os.path.join(tiny_disk, "ckpt")
    small = Run(width=16)
    refs = {}
    for step in (1, 2):
        refs[step] = small.step().params()
        small.save(root, step)
    for rep, width in enumerate((600, 400)):  # 1.4 MiB of weights; 640 KiB + 1.3 MiB of Adam
        big = Run(width=width).step()
        start = time.perf_counter()
        with pytest.raises(OSError) as info:
            big.save(root, 3)
        took = time.perf_counter() - start
        fresh = Run(width=16, seed=9)
        good = fresh.load(root).step == 2 and same(fresh.params(), refs[2])
        fault_record(
            "7 full disk (real 1 MiB tmpfs)",
            rep,
            detection_s=took,
            guard="staging dir + pointer commit",
            false_accepts=int(not good),
        )
        assert info.value.errno == errno.ENOSPC and good
        assert sorted(os.listdir(root)) == ["LATEST", "ckpt-000000001", "ckpt-000000002"]
    small.save(root, 3)  # the failed saves left no garbage: a small save still fits
    assert Run(width=16).load(root).step == 3


# ---- two ranks ---------------------------------------------------------------------------
MODES = ["save-fails-on-rank0", "load-fails-on-rank1", "corrupt"]


@mpijob.requires_mpi
@pytest.mark.multiprocess
@pytest.mark.parametrize("mode", MODES)
def test_two_ranks(tmp_path, fault_record, mode):
    job = mpijob.run(faultlib.WORKERS / "ckpt_dist.py", tmp_path / "ckpt", mode, timeout=60)
    fault_record(
        "7 checkpoint failure on 2 ranks (mpiexec)",
        MODES.index(mode),
        detection_s=job.detection_s,
        deadline_s=30,
        guard={
            "save-fails-on-rank0": "rank 0 status broadcast",
            "load-fails-on-rank1": "verdict allgather",
            "corrupt": "file sha256",
        }[mode],
        orphans=job.orphans,
    )
    assert job.returncode == 0 and job.orphans == 0, job.describe()
    assert "RANK 0 OK" in job.stdout and "RANK 1 OK" in job.stdout, job.describe()
