"""The one way tests start processes: MPI jobs, plain Python scripts, any command line.

    job = mpijob.run(WORKERS / "script.py", "arg", n=2)          # mpiexec -n 2 python script arg
    job = mpijob.run(script, n=2, launcher="distgrad-run")       # through the installed launcher
    job = mpijob.run_python(script, "arg")                       # one plain process
    job = mpijob.run_command([...])                              # anything else
    job.check()                      # fails the test, showing the output, unless it exited 0

Every call returns a finished ``Job``: exit code (``None`` when it outlived ``timeout`` and
was killed), ``stdout``/``stderr`` as text, wall time, and for ``mpiexec`` jobs each rank's
own output (``rank_stdout(r)``/``rank_stderr(r)``; ``stdout`` is rank 0's, then rank 1's, ...,
then mpiexec's own). Child scripts live in ``workers/`` next to the tests that start them.

The environment is ours minus launcher variables (``SLURM_*``, ``PMI_*``, ``OMPI_*``,
``MPI_LOCAL*``) and ``DISTGRAD_*`` (a job sees exactly what its test sets), plus the repository
on ``PYTHONPATH``, one BLAS thread per process, a 30 s collective deadline and the watchdog's
reports in the job's scratch directory (removed with it) unless ``env`` says otherwise, and no
GPU unless ``gpu=True``. Where it can (root, ``unshare``), a job runs in its own mount namespace
with a private, empty ``/dev/shm``, and what it leaves there is listed (``Job.shm_left``; the
fault suite requires it empty). Every process of a job inherits
``DISTGRAD_FAULT_TAG=<unique>``: once the job has ended, the live processes that still carry it
(in ``/proc/*/environ``) are killed and counted (``Job.orphans``). Output goes to files, not
pipes, so a leftover process holding a pipe cannot keep a test waiting. Scripts may mark the
moment they inject a fault (a file in ``$DISTGRAD_FAULT_DIR``, see
``tests/faults/workers/common.py``); ``Job.detection_s`` counts from the earliest mark.

The mpiexec is ``$DISTGRAD_MPIEXEC``, else the one next to this Python (the pip ``mpich``
wheel's in the project venv), else the first on ``PATH``; it must belong to the MPI library
mpi4py uses. ``requires_mpi`` skips a test without one.

Tests that start processes are marked ``@pytest.mark.multiprocess`` (a test marked
``requires_mpi`` is, automatically: tests/conftest.py); ``make unit`` leaves them out and sets
``DISTGRAD_TEST_NO_PROCESSES=1``, under which starting a job fails the test.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TAG_VAR = "DISTGRAD_FAULT_TAG"
FAULT_DIR_VAR = "DISTGRAD_FAULT_DIR"
#: Variables of an outer launcher or job that must not leak into a test's job.
FOREIGN_PREFIXES = ("SLURM_", "PMI_", "OMPI_", "DISTGRAD_", "MPI_LOCAL")


def find_mpiexec() -> Path | None:
    """``$DISTGRAD_MPIEXEC``, else the mpiexec next to this Python, else the first on PATH."""
    candidates = [
        os.environ.get("DISTGRAD_MPIEXEC"),
        str(Path(sys.executable).parent / "mpiexec"),
        shutil.which("mpiexec"),
    ]
    return next((Path(c) for c in candidates if c and os.path.exists(c)), None)


MPIEXEC = find_mpiexec()
DISTGRAD_RUN = Path(sys.executable).parent / "distgrad-run"  # the installed entry point

requires_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and an mpiexec (next to the Python executable, on PATH, or "
    "$DISTGRAD_MPIEXEC)",
)


@cache
def hydra() -> bool:
    """Whether ``MPIEXEC`` is MPICH's hydra (which can write each rank's output to a file)."""
    try:
        out = subprocess.run(
            [str(MPIEXEC), "--version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "HYDRA" in out.stdout + out.stderr


# ---- processes ----------------------------------------------------------------------------------
def new_tag() -> str:
    """A unique value for ``DISTGRAD_FAULT_TAG``."""
    return f"job-{os.getpid()}-{uuid.uuid4().hex[:12]}"


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
    test's leftovers cannot disturb the next."""
    deadline = time.monotonic() + grace
    pids = tagged_pids(tag)
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


def job_env(tag: str, fault_dir: Path, gpu: bool = False, **extra) -> dict:
    """The environment of a job (see the module docstring); ``extra`` goes on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env["DISTGRAD_COLLECTIVE_TIMEOUT"] = "30"
    # A missed deadline leaves the watchdog's report (distgrad-watchdog-<job>/) in this
    # directory, which goes away with the job, unless the test names its own.
    env["DISTGRAD_WATCHDOG_DIR"] = str(fault_dir)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    env[TAG_VAR] = tag
    env[FAULT_DIR_VAR] = str(fault_dir)
    return env


# ---- a finished job -----------------------------------------------------------------------------
@dataclass
class Job:
    """A finished job. ``returncode`` is None when it outlived its timeout (then killed)."""

    command: list
    returncode: int | None
    stdout: str
    stderr: str
    elapsed: float
    orphans: int
    tag: str
    ended_at: float = 0.0  # time.time() when the job's first process exited
    marks: dict = field(default_factory=dict, repr=False)  # common.mark_fault: label -> time
    rank_output: list = field(default_factory=list, repr=False)  # [(stdout, stderr)] per rank
    #: What the job left in its private /dev/shm (None: no private /dev/shm here, or the job
    #: was killed before it could be listed).
    shm_left: list | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def failed(self) -> bool:
        """The job ended by itself with a non-zero exit code (a timeout is not a failure)."""
        return self.returncode not in (0, None)

    def rank_stdout(self, rank: int) -> str:
        """What rank ``rank`` wrote to its stdout (mpiexec jobs under hydra only)."""
        return self._rank(rank)[0]

    def rank_stderr(self, rank: int) -> str:
        """What rank ``rank`` wrote to its stderr (mpiexec jobs under hydra only)."""
        return self._rank(rank)[1]

    def _rank(self, rank: int) -> tuple:
        if not 0 <= rank < len(self.rank_output):
            raise ValueError(
                f"no output of rank {rank}: this job kept {len(self.rank_output)} ranks' output "
                "apart (only mpiexec jobs under MPICH's hydra do)"
            )
        return self.rank_output[rank]

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

    def fault_marks(self) -> dict:
        """``{label: time.time()}`` of every ``common.mark_fault(label)`` in the job."""
        return dict(self.marks)

    @property
    def detection_s(self) -> float | None:
        """Seconds from the first fault mark to the end of the job (None without a mark)."""
        return self.ended_at - min(self.marks.values()) if self.marks else None

    def describe(self) -> str:
        """Command, exit code, time, orphans and the whole output, for assertion messages."""
        code = "timed out (killed)" if self.timed_out else f"exit code {self.returncode}"
        return (
            f"command: {' '.join(map(str, self.command))}\n{code} after {self.elapsed:.1f} s, "
            f"{self.orphans} orphans\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )

    def check(self) -> Job:
        """Fail the test, showing the output, unless the job exited 0; return the job."""
        assert self.returncode == 0, self.describe()
        return self


@cache
def private_shm() -> bool:
    """Whether jobs can get a private ``/dev/shm`` (root, ``unshare``, tmpfs mounts allowed)."""
    if os.environ.get("DISTGRAD_TEST_PRIVATE_SHM") == "0" or not all(
        shutil.which(tool) for tool in ("unshare", "setpriv")
    ):
        return False
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


#: Runs a command in its own mount namespace with an empty tmpfs on /dev/shm, then lists what
#: the job left there into $1 and ends as the command did (a signal is raised again). The
#: command gets SIGTERM if this shell dies (which dies with the test process).
_SHM_WRAPPER = (
    "out=$1; shift; mount -t tmpfs tmpfs /dev/shm || exit 97; "
    'setpriv --pdeathsig TERM -- "$@"; rc=$?; '
    'ls -A /dev/shm > "$out"; if [ $rc -gt 128 ]; then kill -$((rc - 128)) $$; fi; exit $rc'
)


def _end_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies (a job runs in its own
    session, so a killed pytest would otherwise leave it running)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the orphan scan still catches leftovers
        pass


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _marks(fault_dir: Path) -> dict:
    marks = {}
    for path in fault_dir.glob("fault-*"):
        label, _, when = path.read_text().strip().rpartition(" ")
        try:
            marks[label] = float(when)
        except ValueError:  # being written when the job was killed
            continue
    return marks


# ---- running ------------------------------------------------------------------------------------
#: ``[started, ended]`` (``time.time()``) of every job run so far, to tell the files a test's
#: jobs made from those of other programs on the machine (tests/faults: /dev/shm check).
JOB_WINDOWS: list[list] = []
#: ``(argv, shm_left)`` of every job run so far (``Job.shm_left``).
SHM_LEFT: list[tuple] = []


def run_command(
    command: list,
    timeout: float = 60,
    env: dict | None = None,
    gpu: bool = False,
    tag: str | None = None,
    ranks: int = 0,
    per_rank_args=None,
    cwd=ROOT,
) -> Job:
    """Run ``command`` tagged (``env`` on top of ``job_env``), in its own session; past
    ``timeout`` its process group is killed and ``returncode`` is None. Orphans are counted
    after it ended. ``per_rank_args(folder)``: extra arguments that make the command write rank
    r's output to ``folder/stdout.r`` and ``folder/stderr.r`` (``ranks`` of them)."""
    if os.environ.get("DISTGRAD_TEST_NO_PROCESSES") == "1":
        pytest.fail(
            f"this test starts processes ({Path(str(command[0])).name} ...) but is not marked "
            "@pytest.mark.multiprocess: the unit stage (make unit) starts none"
        )
    tag = tag or new_tag()
    window = [time.time(), None]
    JOB_WINDOWS.append(window)
    with tempfile.TemporaryDirectory(prefix="distgrad-job-") as scratch:
        folder = Path(scratch)
        full_env = job_env(tag, folder, gpu=gpu, **(env or {}))
        argv = [str(c) for c in command]
        if per_rank_args is not None:
            argv[1:1] = [str(c) for c in per_rank_args(folder)]
        shm_list = folder / "shm-left"
        started = [*argv]
        if private_shm():  # the job's /dev/shm is its own: what it leaves there is known
            started = ["unshare", "-m", "sh", "-c", _SHM_WRAPPER, "sh", str(shm_list), *argv]
        with open(folder / "stdout", "w+") as out, open(folder / "stderr", "w+") as err:
            start = time.monotonic()
            proc = subprocess.Popen(
                started,
                stdout=out,
                stderr=err,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_end_with_parent,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
            except BaseException:  # Ctrl-C or an error in the test: the job must not outlive it
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                orphans(tag, grace=0)
                raise
        ended_at, elapsed = time.time(), time.monotonic() - start
        leftovers = orphans(tag)
        window[1] = time.time()
        stdout, stderr = _read(folder / "stdout"), _read(folder / "stderr")
        per_rank = []
        if per_rank_args is not None:  # each rank's output in rank order, then the launcher's
            per_rank = [
                (_read(folder / f"stdout.{r}"), _read(folder / f"stderr.{r}")) for r in range(ranks)
            ]
            stdout = "".join(o for o, _ in per_rank) + stdout
            stderr = "".join(e for _, e in per_rank) + stderr
        marks = _marks(folder)
        shm_left = _read(shm_list).split() if shm_list.exists() else None
    SHM_LEFT.append((argv, shm_left))
    return Job(
        argv, code, stdout, stderr, elapsed, leftovers, tag, ended_at, marks, per_rank, shm_left
    )


def run(
    script,
    *args,
    n: int = 2,
    launcher: str = "mpiexec",
    timeout: float = 60,
    env: dict | None = None,
    gpu: bool = False,
    python_args=(),
    launcher_args=(),
    **kwargs,
) -> Job:
    """Run ``python [python_args] script args`` on ``n`` ranks through ``launcher``:
    ``"mpiexec"`` (``MPIEXEC``; with hydra each rank's output is also kept apart) or
    ``"distgrad-run"`` (the installed console script ``DISTGRAD_RUN``, with ``launcher_args``).
    ``kwargs`` go to ``run_command``."""
    program = [sys.executable, *python_args, script, *args]
    if launcher == "mpiexec":
        if MPIEXEC is None:
            pytest.fail("no mpiexec found (mark the test with mpijob.requires_mpi)")
        if not hydra():
            return run_command([MPIEXEC, "-n", n, *program], timeout, env, gpu, **kwargs)

        def per_rank(folder: Path) -> list:  # inserted after "mpiexec"
            return [
                "-outfile-pattern",
                folder / "stdout.%r",
                "-errfile-pattern",
                folder / "stderr.%r",
            ]

        command = [MPIEXEC, "-n", n, *program]
        return run_command(
            command, timeout, env, gpu, ranks=int(n), per_rank_args=per_rank, **kwargs
        )
    if launcher == "distgrad-run":
        command = [DISTGRAD_RUN, "-np", n, *launcher_args, "--", *program]
        return run_command(command, timeout, env, gpu, **kwargs)
    raise ValueError(f"launcher must be 'mpiexec' or 'distgrad-run', got {launcher!r}")


def run_python(script, *args, timeout: float = 60, env: dict | None = None, **kwargs) -> Job:
    """Run ``python script args`` as one plain process (not started by any launcher)."""
    return run_command([sys.executable, script, *args], timeout, env, **kwargs)
