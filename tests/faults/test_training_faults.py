"""Fault scenarios the job survives or stops cleanly from: 4 a model mismatch at DataParallel
construction, 5 collectives in a different order or of different sizes at run time (with and
without DISTGRAD_DEBUG), 6 a parameter used on one rank only, 8 inf/NaN on one rank only,
11 uneven inputs. Replicas must stay bit-identical after every step the job takes."""

import json

import pytest

from tests import mpijob
from tests.mpijob import requires_mpi

from .faultlib import DEADLINE_S, REPS, WORKERS

pytestmark = [requires_mpi, pytest.mark.multiprocess]

MISMATCHES = {  # case of workers/mismatch.py -> what every rank's message must say
    "shape": "parameter 'head.weight' has shape [3, 8] (float32) on rank 0 but [5, 8] (float32) "
    "on rank 1",
    "count": "rank 0 has 6 parameters but rank 1 has 8 (rank 1 also has 'more.weight' [2, 3], "
    "'more.bias' [2])",
    "dtype": "parameter 'body.weight' has shape [8, 6] (float32) on rank 0 but [8, 6] (float64) "
    "on rank 1",
    "buffer": "buffer 'scale' has shape [3] (float32) on rank 0 but [4] (float32) on rank 1",
    "bucket_plan": "rank 0 has 1 buckets and rank 1 has 2; bucket 0 holds 6 parameter(s) "
    "[extra.bias, extra.weight, head.bias, ...] (116 x float32 on numpy) on rank 0 "
    "but 1 parameter(s) [extra.bias] (4 x float32 on numpy) on rank 1",
    "rebuild": "bucket 0 holds 6 parameter(s) [extra.bias, extra.weight, head.bias, ...] (116 x "
    "float32 on numpy) on rank 0 but 1 parameter(s) [extra.bias] (4 x float32 on "
    "numpy) on rank 1. Pass the same bucket_cap_mb and first_bucket_mb on every rank",
    "collective_count": "collectives but rank 1 had issued",
}


def assert_clean(job):
    assert job.returncode == 0 and job.orphans == 0, job.describe()
    assert len(job.results(finished=True)) == 2, job.describe()


@pytest.mark.parametrize("rep", range(REPS))
def test_mismatch_at_construction(rep, fault_record):
    """Each mismatch raises CollectiveMismatchError on every rank with the per-rank diff,
    and the ranks stay in step (the job goes on to the next case)."""
    job = mpijob.run(WORKERS / "mismatch.py", timeout=60)
    for i, (case, expected) in enumerate(MISMATCHES.items()):
        records = job.results(case=case)
        ok = len(records) == 2 and all(r["raised"] and expected in r["message"] for r in records)
        fault_record(
            "4 model/bucket-plan mismatch (7 kinds)",
            rep * len(MISMATCHES) + i,
            passed=ok and job.returncode == 0 and job.orphans == 0,
            detection_s=max((r.get("detection_s", 0) for r in records), default=None),
            guard="contract check",
            orphans=job.orphans if i == 0 else 0,
        )
        assert ok, f"{case}: {records}\n{job.describe()}"
    assert_clean(job)


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("mode", ["order", "shape", "dtype"])
def test_runtime_mismatch_debug(mode, rep, fault_record):
    """DISTGRAD_DEBUG=1: every rank raises before running the mismatched collective, showing
    both fingerprints; the job can go on."""
    job = mpijob.run(WORKERS / "order.py", mode, env={"DISTGRAD_DEBUG": "1"}, timeout=60)
    records = job.results(raised=True)
    fault_record(
        f"5 {mode} mismatch at run time, DISTGRAD_DEBUG=1",
        rep,
        detection_s=max((r["detection_s"] for r in records), default=None),
        guard="debug fingerprint",
        orphans=job.orphans,
    )
    assert job.returncode == 0 and job.orphans == 0 and len(records) == 2, job.describe()
    rank1 = {
        "order": "collective #2 broadcast root=0 (100 x float32)",
        "shape": "collective #2 allreduce op=SUM (200 x float32)",
        "dtype": "collective #2 allreduce op=SUM (100 x float64)",
    }[mode]
    for r in records:
        assert "the ranks are about to run different collectives" in r["message"]
        assert "rank 0: collective #2 allreduce op=SUM (100 x float32)\n" in r["message"]
        assert f"rank 1: {rank1}   <- differs from rank 0" in r["message"], r["message"]


RANK1_COLLECTIVE = {
    "order": "collective #2 broadcast root=0 (100 x float32)",
    "shape": "collective #2 allreduce op=SUM (200 x float32)",
    "dtype": "collective #2 allreduce op=SUM (100 x float64)",
}


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("mode", ["order", "shape", "dtype"])
def test_runtime_mismatch_desync_check(mode, rep, fault_record):
    """Default settings: the desync fingerprints that travel with every collective make
    every rank raise CollectiveDesyncError naming both collectives; the communicator is then
    broken (the mismatched collective was started), so the job is taken down."""
    job = mpijob.run(WORKERS / "order.py", mode, timeout=60)
    records = job.results(raised=True)
    fault_record(
        f"5 {mode} mismatch at run time, default desync check",
        rep,
        detection_s=max((r["detection_s"] for r in records), default=None),
        guard="desync fingerprint",
        orphans=job.orphans,
    )
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert len(records) == 2, job.describe()
    for r in records:
        assert "desync on WORLD: the ranks issued different collectives" in r["message"]
        assert "rank 0: collective #2 allreduce op=SUM (100 x float32)\n" in r["message"]
        assert f"rank 1: {RANK1_COLLECTIVE[mode]}   <- differs" in r["message"], r["message"]


@pytest.mark.parametrize("rep", range(REPS))
def test_runtime_order_mismatch_without_checks(rep, fault_record, tmp_path):
    """With the desync check off (DISTGRAD_DESYNC_CHECK=0) and no debug mode a different
    order hangs both ranks until the deadline; the watchdog sees every rank at the same
    collective number and points to DISTGRAD_DEBUG."""
    job = mpijob.run(
        WORKERS / "order.py",
        "order",
        timeout=60,
        env={
            "DISTGRAD_COLLECTIVE_TIMEOUT": DEADLINE_S,
            "DISTGRAD_WATCHDOG_DIR": tmp_path,
            "DISTGRAD_DESYNC_CHECK": "0",
        },
    )
    fault_record(
        "5 order mismatch at run time, no checks",
        rep,
        detection_s=job.detection_s,
        deadline_s=DEADLINE_S,
        guard="deadline + watchdog",
        orphans=job.orphans,
    )
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert DEADLINE_S - 0.5 < job.detection_s < DEADLINE_S + 4
    (report,) = tmp_path.glob("distgrad-watchdog-*/report.json")
    verdict = json.loads(report.read_text())["verdict"]
    assert (
        verdict.startswith("every rank has issued collective #2") and "DISTGRAD_DEBUG=1" in verdict
    ), verdict


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("mode", ["shape", "dtype"])
def test_runtime_size_mismatch_without_checks(mode, rep, fault_record):
    """Documented limitation with the desync check off (DISTGRAD_DESYNC_CHECK=0): for the
    same operation with other sizes or dtypes MPI either completes, with wrong data on some
    rank, or fails with an MPI error (then the job is aborted); which one is up to the MPI
    library."""
    job = mpijob.run(WORKERS / "order.py", mode, timeout=60, env={"DISTGRAD_DESYNC_CHECK": "0"})
    records = job.results(raised=False)
    failed = job.returncode != 0
    fault_record(
        f"5 {mode} mismatch at run time, no checks",
        rep,
        detection_s=job.detection_s if failed else None,
        guard="MPI error -> abort" if failed else "none: wrong data (use DEBUG)",
        orphans=job.orphans,
    )
    assert job.orphans == 0 and job.returncode is not None, job.describe()
    if failed:  # MPICH: "Other MPI error" in MPI_Test on one rank, which aborts the job
        # (rarely, hydra kills the job before forwarding the ranks' last output)
        assert not job.stderr.strip() or "mpi4py.MPI.Exception" in job.stderr, job.describe()
    else:
        assert len(records) == 2 and not all(r["correct"] for r in records), job.describe()


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("debug", ["0", "1"])
def test_parameter_unused_on_one_rank(debug, rep, fault_record):
    """Also a correct program under DISTGRAD_DEBUG=1: no false alarm from the fingerprints."""
    job = mpijob.run(WORKERS / "unused.py", timeout=60, env={"DISTGRAD_DEBUG": debug})
    fault_record(
        "6 parameter unused on one rank only" + (", DISTGRAD_DEBUG=1" if debug == "1" else ""),
        rep,
        guard="per-parameter used flags",
        orphans=job.orphans,
    )
    assert_clean(job)
    assert len(job.results(ok=True)) == 4


@pytest.mark.parametrize("rep", range(REPS))
def test_nonfinite_on_one_rank(rep, fault_record):
    """Steps 1, 3, 4 are skipped on both ranks, parameters and Adam state untouched (step 3:
    inf only in rank 0's reduced gradient, so rank 1 skips because of the flag's allreduce);
    the third skip in a row (step 5, max_consecutive_skips=2) stops both ranks."""
    job = mpijob.run(WORKERS / "nonfinite.py", timeout=60)
    fault_record(
        "8 NaN/Inf on one rank only",
        rep,
        guard="DataParallel.step agreed flag",
        orphans=job.orphans,
    )
    assert_clean(job)
    for step, stepped in [(0, True), (1, False), (2, True), (3, False), (4, False)]:
        records = job.results(step=step)
        assert len(records) == 2, job.describe()
        for r in records:
            assert r["stepped"] == stepped and r["untouched"] == (not stepped), r
    stops = job.results(step=5, stopped=True)
    assert len(stops) == 2, job.describe()
    for r in stops:
        assert r["skipped"] == 4
        assert (
            "for 3 consecutive step(s) (max_consecutive_skips=2); training stopped on "
            "every rank" in r["message"]
        )


@pytest.mark.parametrize("rep", range(REPS))
@pytest.mark.parametrize("mode", ["join", "sampler"])
def test_uneven_inputs(mode, rep, fault_record):
    """dp.join: rank 0 (5 batches) stops with rank 1 (3) and warns; DistributedSampler pads
    11 samples to 6 per rank, so both take the same number of steps."""
    job = mpijob.run(WORKERS / "uneven.py", mode, timeout=60)
    fault_record(
        f"11 uneven inputs ({'dp.join' if mode == 'join' else 'DistributedSampler'})",
        rep,
        guard="join flag" if mode == "join" else "sampler padding",
        orphans=job.orphans,
    )
    assert job.returncode == 0 and job.orphans == 0, job.describe()
    records = {r["rank"]: r for r in job.results()}
    assert records[0]["steps"] == records[1]["steps"] == 3, records
    if mode == "join":
        assert records[0]["warnings"] == [
            "DataParallel.join: rank(s) [1] ran out of batches after 3 steps, so rank 0 stops "
            "too and leaves its remaining batches unused"
        ]
        assert records[1]["warnings"] == []
    else:
        assert records[0]["batches"] == records[1]["batches"] == 3


@pytest.mark.parametrize("rep", range(REPS))
def test_uneven_inputs_unprotected(rep, fault_record, tmp_path):
    """Without join or padding (and with the desync check off, see test_no_hang.py for the
    default) the longer rank waits in its next allreduce for a rank that has finished: the
    deadline and the watchdog catch it."""
    job = mpijob.run(
        WORKERS / "uneven.py",
        "naive",
        timeout=60,
        env={
            "DISTGRAD_COLLECTIVE_TIMEOUT": DEADLINE_S,
            "DISTGRAD_WATCHDOG_DIR": tmp_path,
            "DISTGRAD_DESYNC_CHECK": "0",
        },
    )
    fault_record(
        "11 uneven inputs, unprotected",
        rep,
        detection_s=job.detection_s,
        deadline_s=DEADLINE_S,
        guard="deadline + watchdog",
        orphans=job.orphans,
    )
    assert job.returncode not in (0, None) and job.orphans == 0, job.describe()
    assert job.detection_s < DEADLINE_S + 4
    (report,) = tmp_path.glob("distgrad-watchdog-*/report.json")
    report = json.loads(report.read_text())
    assert (
        report["ranks"]["1"] is None and "rank(s) 1 did not answer: exited" in report["verdict"]
    ), report["verdict"]
