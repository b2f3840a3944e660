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

from . import faultlib


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(scenario): the summary-table scenario of a test")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" or report.failed:
        item._fault_failed = getattr(item, "_fault_failed", False) or report.failed
    return report


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
