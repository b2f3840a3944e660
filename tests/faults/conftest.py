"""The fault suite's summary table.

API (stable; used by every ``tests/faults/test_*.py``):

``fault_record(scenario, repetition=0, passed=None, detection_s=None, deadline_s=None,
guard=None, orphans=0, false_accepts=0)`` — the fixture (a function) adds one row to the table:

- ``scenario``: a name starting with the issue's scenario number, e.g. ``"1 SIGKILL in
  allreduce (mpiexec)"`` or ``"7 truncated checkpoint"``; rows with the same name are its
  repetitions (``repetition`` numbers them) and make one line of the table.
- ``passed``: leave it None to take the test's outcome (a test that fails after recording
  marks its rows failed); pass True/False to decide yourself (several cases in one test).
- ``detection_s``: seconds from the fault to its detection (e.g. ``Job.detection_s``);
  ``deadline_s``: the deadline it is held against (e.g. the collective timeout).
- ``guard``: what caught the fault (``"CollectiveTimeoutError"``, ``"contract check"``,
  ``"manifest sha256"``, ...).
- ``orphans``: processes left behind (``Job.orphans``, from ``mpijob.orphans(tag)``);
  ``false_accepts``: corrupt checkpoints that loaded without an error. Both must be 0.

A test using ``fault_record`` that fails before recording anything still gets a failed row,
named after the ``@pytest.mark.fault("scenario")`` marker if any, else after the test.
``faultlib.record`` adds a row outside a test (its ``passed`` must be given).

At the end of the run one table is printed: scenario, repetitions, passed, detection time
(median/max) against the deadline, the guards that fired, orphan processes, false accepts.
With ``DISTGRAD_FAULT_TABLE=path`` it is also written to that file.

Jobs: ``mpijob.run(WORKERS / "script.py", *args, n=2, launcher="mpiexec" | "distgrad-run",
env=..., timeout=...)`` (``tests/mpijob.py``) runs a script tagged and returns a ``mpijob.Job``
(``returncode``, ``stdout``, ``stderr``, ``output``, ``elapsed``, ``orphans``,
``detection_s``, ``describe()``); ``mpijob.run_command(argv, ...)`` for other programs.
"""

from __future__ import annotations

import os

import pytest
from distgrad.launcher.shm import MPI_SHM_PREFIXES, SHM_DIR, stale_segments

from tests import mpijob

from . import faultlib


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(scenario): the summary-table scenario of a test")
    config.addinivalue_line(
        "markers",
        "mpi_shm_left(reason): a known case where MPI leaves its /dev/shm file (not failed)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" or report.failed:
        item._fault_failed = getattr(item, "_fault_failed", False) or report.failed
    return report


def _made_during(path: str, windows: list) -> bool:
    """Whether ``path`` was created while one of these jobs ran (other programs on the
    machine make such files too)."""
    try:
        made = os.stat(path).st_ctime
    except OSError:
        return False
    return any(start - 0.5 <= made <= (end or made) + 0.5 for start, end in windows)


def _shm_files() -> set[str]:
    try:
        return {name for name in os.listdir(SHM_DIR) if name.startswith(MPI_SHM_PREFIXES)}
    except OSError:
        return set()


@pytest.fixture(autouse=True)
def no_mpi_shm_files_left(request):
    """Every scenario, failed jobs included, must leave no MPI shared-memory file in /dev/shm.

    Where jobs get a private /dev/shm (``mpijob.private_shm()``: root and ``unshare``), what each
    job left there is exact. Elsewhere, files that appeared during the test, created while one
    of its jobs ran, that no live process has open or mapped count (other programs on the
    machine could make such files too); they are removed. A test marked
    ``mpi_shm_left(reason)`` is a documented exception."""
    before, first_job, first_window = _shm_files(), len(mpijob.SHM_LEFT), len(mpijob.JOB_WINDOWS)
    yield
    jobs = mpijob.SHM_LEFT[first_job:]
    if request.node.get_closest_marker("mpi_shm_left") is not None:
        return
    if mpijob.private_shm():
        left = [
            f"{' '.join(argv[:4])} ...: {names}"
            for argv, names in jobs
            if names and any(name.startswith(MPI_SHM_PREFIXES) for name in names)
        ]
        assert not left, f"MPI shared-memory files left by the test's jobs: {left}"
        return
    new = _shm_files() - before
    windows = mpijob.JOB_WINDOWS[first_window:]
    if not new or not windows:
        return
    stale = [
        path
        for path in stale_segments(0.0)
        if os.path.basename(path) in new and _made_during(path, windows)
    ]
    for path in stale:
        try:
            os.unlink(path)
        except OSError:
            pass
    assert not stale, f"MPI shared-memory files left by the test's jobs: {stale}"


@pytest.fixture
def fault_record(request):
    """Add a row to the fault summary table (see the module docstring)."""
    rows = []

    def add(
        scenario,
        repetition=0,
        passed=None,
        detection_s=None,
        deadline_s=None,
        guard=None,
        orphans=0,
        false_accepts=0,
    ):
        row = faultlib.record(
            scenario, repetition, passed, detection_s, deadline_s, guard, orphans, false_accepts
        )
        row.nodeid = request.node.nodeid
        rows.append(row)
        return row

    yield add
    failed = getattr(request.node, "_fault_failed", False)
    for row in rows:
        if row.passed is None:
            row.passed = not failed
    if failed and not rows:
        marker = request.node.get_closest_marker("fault")
        name = marker.args[0] if marker else request.node.name
        faultlib.record(name, passed=False).nodeid = request.node.nodeid


def pytest_terminal_summary(terminalreporter):
    if not faultlib.RESULTS:
        return
    lines = faultlib.summary_lines()
    terminalreporter.section("fault suite summary")
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get("DISTGRAD_FAULT_TABLE")
    if path:
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
