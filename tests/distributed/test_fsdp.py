"""fully_shard / ZeRO over real MPI processes: prefetch and overlap (event log), bytes on the
wire against the ZeRO model, memory against ``estimate()``, divergent control flow."""

import re
import time
from pathlib import Path

import pytest

from tests import mpijob

WORKERS = Path(__file__).resolve().parent / "workers"


def run_mpi(n, script, *args, timeout=60):
    return mpijob.run(WORKERS / script, *args, n=n, timeout=timeout)


def check(job):
    return job.check()


pytestmark = mpijob.requires_mpi


def numbers(proc, tag, n):
    check(proc)
    rows = re.findall(tag + r" (\d+) (\d+) (\d+)(?: (\d+))?", proc.stdout)
    assert len(rows) == n, proc.stdout
    return [[int(x) for x in row if x] for row in rows]


def test_prefetch_and_reduce_scatter_overlap():
    proc = check(run_mpi(2, "fsdp_checks.py", "overlap", timeout=120))
    assert proc.stdout.count("OK") == 2, proc.stdout


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("stage, factor", [(0, 2), (1, 3), (5, 2), (2, 2), (3, 3)])
def test_bytes_per_step_match_the_model(ranks, stage, factor):
    """DDP and ZeRO-2: 2 Psi; ZeRO-3: 3 Psi; ZeRO-1 on DDP (torch's form): 2 Psi + Psi;
    ZeRO-1 with ``ddp=`` (stage 5 here: DDP reduce-scatters to the optimizer): 2 Psi."""
    for counted, predicted, psi in numbers(
        run_mpi(ranks, "fsdp_checks.py", "bytes", stage, timeout=120), "BYTES", ranks
    ):
        assert abs(counted - factor * psi) <= 0.01 * factor * psi, (counted, psi)
        assert abs(counted - predicted) <= 0.01 * predicted, (counted, predicted)


def test_memory_within_estimate_and_zero3_below_a_third_of_ddp():
    persistent = {}
    for stage in (0, 1, 2, 3):
        rows = numbers(run_mpi(4, "fsdp_checks.py", "memory", stage, timeout=300), "MEM", 4)
        for held, peak, predicted_held, predicted_peak in rows:
            assert abs(held - predicted_held) <= 0.1 * predicted_held, (stage, rows)
            assert abs(peak - predicted_peak) <= 0.1 * predicted_peak, (stage, rows)
        persistent[stage] = max(row[0] for row in rows)
    assert persistent[3] <= 0.35 * persistent[0], persistent


def test_divergent_control_flow_raises_on_every_rank():
    start = time.monotonic()
    proc = check(run_mpi(2, "fsdp_checks.py", "diverge", timeout=60))
    assert time.monotonic() - start < 30
    for rank in (0, 1):
        assert f"rank {rank} raised: fully_shard: the ranks diverged" in proc.stdout, proc.stdout
    assert proc.stdout.count("rank 0: forward all-gather of unit 1") == 2, proc.stdout
    assert proc.stdout.count("rank 1: forward all-gather of unit 2") == 2, proc.stdout


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_sharded_state_dicts_round_trip_and_reshard_from_whole(stage):
    """ShardedTensor values (model and optimizer state) equal the single process's; loading
    whole tensors / covering pieces continues training exactly; a non-covering piece is refused."""
    proc = check(run_mpi(3, "fsdp_state.py", stage, timeout=120))
    assert proc.stdout.count("OK") == 3, proc.stdout


@pytest.mark.parametrize("stage", [2, 3])
def test_a_list_of_modules_is_one_unit_gathered_once(stage):
    proc = check(run_mpi(2, "fsdp_units.py", "group", stage, timeout=120))
    assert proc.stdout.count("OK") == 2, proc.stdout


@pytest.mark.parametrize("cast", [1, 0])
def test_mixed_precision_casts_inputs_and_outputs(cast):
    proc = check(run_mpi(2, "fsdp_units.py", "mp", cast, timeout=120))
    assert proc.stdout.count("OK") == 2, proc.stdout


def test_hpz_reshards_to_groups_and_gathers_backward_within_them():
    """reshard_after_forward=2 on 4 ranks: exact; only 2 Psi on the world per step."""
    proc = check(run_mpi(4, "fsdp_units.py", "hpz", 2, timeout=240))
    assert proc.stdout.count("OK") == 4, proc.stdout
