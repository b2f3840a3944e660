"""Running fault-injection jobs and checking that they left nothing behind.

``run_job(script, *args, n=2, launcher="mpiexec" | "distgrad-run")`` starts a real job (the
mpiexec next to this Python, or ``distgrad-run`` as ``python -m distgrad.launcher``) and returns a
``Job``: exit code, output, wall time, the orphan count and the fault marks. Every process of a
job inherits ``DISTGRAD_FAULT_TAG=<unique>``; once the job has ended, ``orphans(tag)`` finds
the live processes that still carry it in ``/proc/*/environ``, kills them (they are ours) and
counts them. ``run_command`` does the same for any command line.

Scripts in ``workers/`` mark the moment they inject a fault with ``common.mark_fault()``
(a file in ``$DISTGRAD_FAULT_DIR``); ``Job.detection_s`` is the time from the earliest mark
to the end of the job: how long the job took to notice the fault and go down.

``record(...)`` (also the ``fault_record`` fixture) adds a row to the summary table printed
at the end of the run; see ``conftest.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "workers"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
TAG_VAR = "DISTGRAD_FAULT_TAG"
FAULT_DIR_VAR = "DISTGRAD_FAULT_DIR"
#: Repetitions of each scenario (``DISTGRAD_FAULT_REPS`` overrides) and the collective deadline
#: of the scenarios that wait for one.
REPS = int(os.environ.get("DISTGRAD_FAULT_REPS", "2"))
DEADLINE_S = 3.0

requires_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
    reason="needs mpi4py and an mpiexec next to the Python executable",
)

__all__ = [
    "REPS",
    "DEADLINE_S",
    "requires_mpi",
    "Job",
    "run_job",
    "run_command",
    "job_env",
    "new_tag",
    "tagged_pids",
    "orphans",
    "record",
    "RESULTS",
    "Row",
    "summary_lines",
    "ROOT",
    "WORKERS",
    "MPIEXEC",
]


# ---- processes ----------------------------------------------------------------------------------
def new_tag() -> str:
    """A unique value for ``DISTGRAD_FAULT_TAG``."""
    return f"fault-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def tagged_pids(tag: str) -> list[int]:
    """Live (not zombie) processes, other than this one, whose environment holds the tag."""
    needle = f"{TAG_VAR}={tag}".encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if needle not in Path(f"/proc/{entry}/environ").read_bytes() + b"\0":
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or not ours to read
            continue
        if state not in ("Z", "X"):
            found.append(int(entry))
    return found


def orphans(tag: str, grace: float = 1.0) -> int:
    """How many processes of the tagged job are still alive ``grace`` seconds after it ended
    (a process in the middle of exiting gets that long); they are killed (by pid), so one
    scenario's leftovers cannot disturb the next."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        pids = tagged_pids(tag)
        if not pids:  # a process caught in exec() has no readable environment for a moment:
            time.sleep(0.1)  # none only counts when a second look agrees
            pids = tagged_pids(tag)
            if not pids:
                break
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously: wait until gone
    while tagged_pids(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(pids)


# ---- jobs ---------------------------------------------------------------------------------------
def job_env(tag: str, fault_dir: Path, **extra) -> dict:
    """The environment of a job: ours, with the repository importable, one BLAS thread per
    rank, a 30 s collective deadline unless ``extra`` says otherwise, the tag and the fault
    directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "PMI_", "OMPI_", "DISTGRAD_", "MPI_LOCAL"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["DISTGRAD_COLLECTIVE_TIMEOUT"] = "30"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    env[TAG_VAR] = tag
    env[FAULT_DIR_VAR] = str(fault_dir)
    return env


@dataclass
class Job:
    """A finished job. ``returncode`` is None when it outlived ``timeout`` (then killed)."""

    command: list
    returncode: int | None
    stdout: str
    stderr: str
    elapsed: float
    orphans: int
    tag: str
    fault_dir: Path
    ended_at: float = 0.0  # time.time() when the job's launcher exited

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def results(self, **match) -> list:
        """The ``RESULT {json}`` records the ranks printed (``common.emit``), those whose
        fields equal ``match``; robust to lines of two ranks run together."""
        decoder, found = json.JSONDecoder(), []
        for chunk in self.stdout.split("RESULT ")[1:]:
            try:
                record = decoder.raw_decode(chunk)[0]
            except ValueError:
                continue
            if isinstance(record, dict) and all(record.get(k) == v for k, v in match.items()):
                found.append(record)
        return found

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def fault_marks(self) -> dict:
        """``{label: time.time()}`` of every ``common.mark_fault(label)`` in the job."""
        marks = {}
        for path in self.fault_dir.glob("fault-*"):
            label, _, when = path.read_text().strip().rpartition(" ")
            try:
                marks[label] = float(when)
            except ValueError:  # being written when the job was killed
                continue
        return marks

    @property
    def detection_s(self) -> float | None:
        """Seconds from the first fault mark to the end of the job (None without a mark)."""
        marks = self.fault_marks()
        return self.ended_at - min(marks.values()) if marks else None

    def describe(self) -> str:
        return (
            f"command: {' '.join(map(str, self.command))}\nexit code {self.returncode} "
            f"after {self.elapsed:.1f} s, {self.orphans} orphans\n--- stdout\n{self.stdout}"
            f"\n--- stderr\n{self.stderr}"
        )


def run_command(
    command: list,
    timeout: float = 60,
    env: dict | None = None,
    tag: str | None = None,
    fault_dir: Path | None = None,
    cwd=ROOT,
) -> Job:
    """Run ``command`` tagged (``env`` on top of ``job_env``), in its own session; past
    ``timeout`` its process group is killed and ``returncode`` is None. Orphans are counted
    after it ended."""
    tag = tag or new_tag()
    fault_dir = Path(fault_dir or tempfile.mkdtemp(prefix="distgrad-fault-"))
    full_env = job_env(tag, fault_dir, **(env or {}))
    # Output goes to files, not pipes: a leftover process holding a pipe open would keep
    # us waiting for its end instead of counting it as an orphan.
    with open(fault_dir / "stdout", "w+") as out, open(fault_dir / "stderr", "w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(c) for c in command],
            stdout=out,
            stderr=err,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    ended_at, elapsed = time.time(), time.monotonic() - start
    leftovers = orphans(tag)
    stdout, stderr = ((fault_dir / name).read_text() for name in ("stdout", "stderr"))
    return Job(list(command), code, stdout, stderr, elapsed, leftovers, tag, fault_dir, ended_at)


def run_job(
    script,
    *args,
    n: int = 2,
    launcher: str = "mpiexec",
    timeout: float = 60,
    env: dict | None = None,
    python_args=(),
    launcher_args=(),
    **kwargs,
) -> Job:
    """Run ``python [python_args] script args`` on ``n`` ranks through ``launcher``
    (``"mpiexec"``: the one next to this Python; ``"distgrad-run"``: the project's launcher,
    with ``launcher_args``). ``script`` is a path or a file name in ``workers/``."""
    script = Path(script)
    if not script.is_absolute():
        script = WORKERS / script
    program = [sys.executable, *python_args, script, *args]
    if launcher == "mpiexec":
        command = [MPIEXEC, "-n", n, *program]
    elif launcher == "distgrad-run":
        command = [sys.executable, "-m", "distgrad.launcher", "-np", n, *launcher_args, "--", *program]
    else:
        raise ValueError(f"launcher must be 'mpiexec' or 'distgrad-run', got {launcher!r}")
    return run_command(command, timeout, env, **kwargs)


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
