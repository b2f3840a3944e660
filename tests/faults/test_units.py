"""Single-process tests of the reliability features and of the fault-suite helpers."""

import json
import time

import numpy as np
import pytest

import distgrad
import distgrad.optim as optim
from distgrad import nn
from distgrad.distributed import (
    CollectiveTimeoutError,
    DataParallel,
    LocalCommunicator,
    NonFiniteGradientError,
)
from distgrad.distributed.communicator import ReduceOp, Work
from distgrad.distributed.contract import _describe, _fingerprint, debug_requested
from distgrad.distributed.reducer import _explain
from distgrad.distributed.watchdog import Watchdog

from . import faultlib


def make_dp(**kwargs):
    distgrad.manual_seed(0)
    return DataParallel(nn.Linear(3, 2), communicator=LocalCommunicator(), **kwargs)


def train_step(dp, opt, poison=False):
    loss = dp(distgrad.ones(4, 3)).square().mean()
    (loss * float("nan") if poison else loss).backward()
    stepped = dp.step(opt)
    opt.zero_grad()
    return stepped


def snapshot(dp, opt):
    return [p.detach().numpy().copy() for p in dp.parameters()] + [
        np.array(v.numpy() if isinstance(v, distgrad.Tensor) else v, copy=True)
        for s in opt.state.values()
        for v in s.values()
    ]


def test_step_skips_nonfinite_and_stops_after_k():
    dp = make_dp(max_consecutive_skips=1)
    opt = optim.Adam(dp.parameters(), lr=0.1)
    assert train_step(dp, opt)
    before = snapshot(dp, opt)
    with pytest.warns(
        RuntimeWarning,
        match=r"skipped on every rank, gradients held inf/NaN in "
        r"'weight', 'bias' \(1 in a row, at most 1\)",
    ):
        assert not train_step(dp, opt, poison=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(dp, opt)))
    assert train_step(dp, opt) and dp.consecutive_skips == 0  # a good step resets the count
    with pytest.warns(RuntimeWarning):
        train_step(dp, opt, poison=True)
    with pytest.raises(
        NonFiniteGradientError,
        match=r"for 2 consecutive step\(s\) "
        r"\(max_consecutive_skips=1\)",
    ):
        train_step(dp, opt, poison=True)
    assert dp.skipped_steps == 3


def test_step_raise_policy():
    dp = make_dp(nonfinite="raise")
    opt = optim.SGD(dp.parameters(), lr=0.1)
    before = snapshot(dp, opt)
    with pytest.raises(NonFiniteGradientError, match=r"nonfinite='raise'"):
        train_step(dp, opt, poison=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(dp, opt)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nonfinite": "ignore"}, "nonfinite must be 'skip' or 'raise', got 'ignore'"),
        ({"max_consecutive_skips": -1}, "max_consecutive_skips must be an int >= 0, got -1"),
    ],
)
def test_policy_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_dp(**kwargs)


def test_join_on_one_rank_yields_everything():
    dp = make_dp()
    assert list(dp.join(iter(range(4)))) == [0, 1, 2, 3]


def test_fingerprint_round_trip():
    a = np.zeros((3, 4), np.float64)
    text = _describe(_fingerprint(7, "reduce", a, 1, ReduceOp.MAX), 0, 2)
    assert text == "collective #7 reduce op=MAX root=1 (12 x float64)"
    assert _describe(_fingerprint(2, "barrier", None, None, None), 0, 2) == "collective #2 barrier"


@pytest.mark.parametrize(
    "value, expected", [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)]
)
def test_debug_requested(value, expected):
    assert debug_requested({"DISTGRAD_DEBUG": value}) is expected


def test_contract_diff_names_rank_and_difference():
    ref = {
        "parameters": [("w", [2, 3], "float32")],
        "buffers": [],
        "buckets": [("float32", "numpy", ["w"], 7)],
        "collectives": 4,
    }
    plan = dict(ref, buckets=[("float32", "numpy", ["w"], 7), ("float32", "numpy", ["v"], 2)])
    message = _explain("DataParallel", [ref, ref, plan])
    assert message.startswith("DataParallel: the ranks do not agree on the collective contract")
    assert (
        "rank 0 has 1 buckets and rank 2 has 2; bucket 1 holds nothing on rank 0 but 1 "
        "parameter(s) [v] (2 x float32 on numpy) on rank 2" in message
    )
    assert "rank 1" not in message
    count = dict(ref, collectives=5)
    assert "rank 0 had issued 4 collectives but rank 1 had issued 5" in _explain(
        "DataParallel", [ref, count]
    )
    shape = dict(ref, parameters=[("w", [3, 3], "float32")])
    assert (
        "parameter 'w' has shape [2, 3] (float32) on rank 0 but [3, 3] (float32) on rank 1"
        in _explain("DataParallel", [ref, shape])
    )


def never_done():
    return False


def test_watchdog_report_on_timeout(tmp_path, capsys):
    comm = LocalCommunicator(timeout=0.05)
    watchdog = Watchdog(0, 1, "unit", base=str(tmp_path))
    watchdog.watch(comm)
    try:
        comm.barrier(async_op=False)  # completed: becomes "last completed"
        Work(comm, never_done, "allreduce", np.zeros(5, np.float32), reduce_op=ReduceOp.SUM)
        stuck = Work(comm, never_done, "broadcast", np.zeros(3, np.int64), root=0)
        with pytest.raises(CollectiveTimeoutError, match=r"Watchdog report: .*report\.json"):
            stuck.wait()
    finally:
        watchdog.stop()
    report = json.loads((tmp_path / "distgrad-watchdog-unit" / "report.json").read_text())
    state = report["ranks"]["0"]["communicators"][0]
    assert state["last_completed"]["describe"] == "collective #1 barrier"
    assert [p["describe"] for p in state["pending"]] == [
        "collective #2 allreduce op=SUM (5 x float32, 20 bytes)",
        "collective #3 broadcast (3 x int64, 24 bytes) root=0",
    ]
    assert report["timed_out"]["seq"] == 3 and report["deadline_s"] == 0.05
    assert "test_units.py" in report["ranks"]["0"]["where"][-1]
    err = capsys.readouterr().err
    assert "[rank 0] distgrad watchdog: collective #3 broadcast" in err
    assert comm.failure is not None


def test_watchdog_thread_answers_trigger(tmp_path):
    comm = LocalCommunicator()
    watchdog = Watchdog(1, 2, "answer", base=str(tmp_path))
    watchdog.watch(comm)
    directory = tmp_path / "distgrad-watchdog-answer"
    directory.mkdir()
    (directory / "trigger").touch()
    deadline = time.monotonic() + 5
    while not (directory / "rank-1.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    watchdog.stop()
    state = json.loads((directory / "rank-1.json").read_text())
    assert state["rank"] == 1 and state["communicators"][0]["issued"] == 0


def test_summary_table_groups_scenarios():
    rows = [
        faultlib.Row("2 b", 0, True, 1.0, 3.0, "g"),
        faultlib.Row("2 b", 1, False, 3.0, 3.0, "h", orphans=1),
        faultlib.Row("10 a", 0, True),
        faultlib.Row("7 c", 0, True, false_accepts=2),
    ]
    lines = faultlib.summary_lines(rows)
    assert [line.split()[0] for line in lines[2:5]] == ["2", "7", "10"]  # scenario order
    assert lines[2].split() == ["2", "b", "2", "1", "2.00/3.00", "3", "g,", "h", "1", "0"]
    assert lines[-1] == (
        "3 scenarios, 4 runs, 1 failed, 1 orphan processes (must be 0), "
        "2 false accepts of corrupt checkpoints (must be 0)"
    )


def test_watchdog_never_recreates_a_removed_base_directory(tmp_path):
    """A rank still running after its job ended (whose scratch directory, the watchdog's base,
    was removed) must not bring the directory back; a base missing from the start is made."""
    base = tmp_path / "job-scratch"
    base.mkdir()
    late = Watchdog(1, 2, "late", base=str(base))
    late.stop()
    base.rmdir()
    with pytest.raises(FileNotFoundError):
        late._answer()
    assert not base.exists()
    fresh = Watchdog(1, 2, "fresh", base=str(tmp_path / "made-on-demand"))
    fresh.stop()
    fresh._answer()
    assert (tmp_path / "made-on-demand" / "distgrad-watchdog-fresh" / "rank-1.json").exists()
