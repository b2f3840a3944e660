"""The fault suite's summary table, and its constants.

Jobs are started with ``tests.mpijob`` (``mpijob.run(WORKERS / "kill.py", n=2)``): it tags
every process, counts and kills orphans, and reads the fault marks that scripts in
``workers/`` leave with ``common.mark_fault()`` (``Job.detection_s``).

``record(...)`` (also the ``fault_record`` fixture) adds a row to the summary table printed
at the end of the run; see ``conftest.py``.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tests import mpijob

WORKERS = Path(__file__).resolve().parent / "workers"
#: Repetitions of each scenario (``DISTGRAD_FAULT_REPS`` overrides) and the collective deadline
#: of the scenarios that wait for one.
REPS = int(os.environ.get("DISTGRAD_FAULT_REPS", "2"))
DEADLINE_S = 3.0


def run_job(script, *args, **kwargs) -> mpijob.Job:
    """Deprecated alias of ``mpijob.run`` that looks a bare file name up in ``workers/``
    (kept while other branches still call it; new code calls ``mpijob.run``)."""
    script = Path(script)
    return mpijob.run(script if script.is_absolute() else WORKERS / script, *args, **kwargs)


# ---- the summary table --------------------------------------------------------------------------
@dataclass
class Row:
    """One repetition of one scenario. ``passed`` None: decided by the test's outcome."""

    scenario: str
    repetition: int = 0
    passed: bool | None = None
    detection_s: float | None = None
    deadline_s: float | None = None
    guard: str | None = None
    orphans: int = 0
    false_accepts: int = 0
    nodeid: str = field(default="", repr=False)


RESULTS: list[Row] = []


def record(
    scenario: str,
    repetition: int = 0,
    passed: bool | None = None,
    detection_s: float | None = None,
    deadline_s: float | None = None,
    guard: str | None = None,
    orphans: int = 0,
    false_accepts: int = 0,
) -> Row:
    """Add one row to the summary table and return it. Rows recorded through the
    ``fault_record`` fixture with ``passed=None`` take the test's outcome."""
    row = Row(
        scenario,
        repetition,
        passed,
        detection_s,
        deadline_s,
        guard,
        int(orphans),
        int(false_accepts),
    )
    RESULTS.append(row)
    return row


def _scenario_key(name: str):
    head = name.split()[0] if name.split() else ""
    return (int(head), name) if head.isdigit() else (10**9, name)


def _seconds(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f}/{max(values):.2f}"


def summary_lines(rows=None) -> list[str]:
    """The summary table: one line per scenario, in scenario order, plus a verdict."""
    rows = RESULTS if rows is None else rows
    groups = {}
    for row in rows:
        groups.setdefault(row.scenario, []).append(row)
    header = (
        "scenario",
        "reps",
        "passed",
        "detect med/max s",
        "deadline s",
        "guard fired",
        "orphans",
        "false accepts",
    )
    table = []
    for name in sorted(groups, key=_scenario_key):
        group = groups[name]
        deadlines = sorted({r.deadline_s for r in group if r.deadline_s is not None})
        guards = sorted({r.guard for r in group if r.guard})
        table.append(
            (
                name,
                str(len(group)),
                str(sum(bool(r.passed) for r in group)),
                _seconds(r.detection_s for r in group),
                "/".join(f"{d:g}" for d in deadlines) or "-",
                ", ".join(guards) or "-",
                str(sum(r.orphans for r in group)),
                str(sum(r.false_accepts for r in group)),
            )
        )
    widths = [max(len(line[i]) for line in [header] + table) for i in range(len(header))]

    def fmt(line):
        return "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()

    failed = sum(not r.passed for r in rows)
    orphan_total = sum(r.orphans for r in rows)
    false_total = sum(r.false_accepts for r in rows)
    verdict = (
        f"{len(groups)} scenarios, {len(rows)} runs, {failed} failed, "
        f"{orphan_total} orphan processes (must be 0), {false_total} false accepts of "
        f"corrupt checkpoints (must be 0)"
    )
    return [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, table), "", verdict]
