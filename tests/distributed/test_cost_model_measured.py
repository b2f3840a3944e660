"""The cost model against measured communication on this machine: calibrated from the
collectives of a 2- and a 4-rank job, it predicts the time of the MLP benchmark's step
collectives (DDP's bucket allreduces, ZeRO-1/2/3's all-gathers and reduce-scatters, the halved
bytes of the fp16/bf16 hooks), timed interleaved with the calibration in the same job.

Marked ``slow``: it compares times (as ratios, with a generous tolerance) on a machine shared
with other jobs. Busy-polling MPI ranks on an oversubscribed machine are descheduled for whole
time slices, which no alpha-beta model describes, so the check gets three attempts and, when
they all miss while the machine's load exceeds its cores, skips naming the ratios instead of
failing. The model's arithmetic is tested deterministically in test_cost_model.py."""

import json
import os

import pytest

from tests.distributed.mpi_helpers import check, requires_mpi, run_mpi

pytestmark = [pytest.mark.slow, requires_mpi]


def _attempt(n):
    out = check(run_mpi(n, "cost_model_check.py", timeout=300)).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.split(" ", 1)[1])
    measured = sum(m for m, _ in result.values())
    predicted = sum(p for _, p in result.values())
    report = {mode: round(p / m, 2) for mode, (m, p) in result.items()}
    # all modes together within 30%; each one within a factor of 2 (single timings are noisy)
    ok = 0.7 <= predicted / measured <= 1.3 and all(0.5 <= r <= 2.0 for r in report.values())
    return ok, round(predicted / measured, 2), report


@pytest.mark.parametrize("n", [2, 4])
def test_predicted_step_communication_within_30_percent(n):
    attempts = []
    for _ in range(3):
        ok, total, report = _attempt(n)
        if ok:
            return
        attempts.append((total, report, os.getloadavg()[0]))
    if all(load > (os.cpu_count() or 1) for _, _, load in attempts):
        pytest.skip(f"machine loaded beyond its cores; predicted/measured: {attempts}")
    pytest.fail(f"predicted/measured (all modes, per mode, load average): {attempts}")
