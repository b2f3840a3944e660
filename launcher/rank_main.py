"""Per-rank wrapper: ``python .../launcher/rank_main.py (SCRIPT | -m MODULE | -c CODE | --exec
PROGRAM) [ARGS...]``.

distgrad-run starts this in every process. It sets the per-rank variables
(:func:`rank_environment`) before the user program imports anything and then
either runs a Python program as ``__main__`` or, with ``--exec``, replaces itself
with any other program. For Python programs it makes stdout and stderr
line-buffered (output shows up live, in whole lines) and gives ``python -m mpi4py``
semantics on failure: an uncaught exception (or a non-zero ``sys.exit``) prints the
traceback with every line prefixed ``[rank N]`` and aborts the whole job, so no
rank is left waiting in a collective.

It runs by file path and imports only the standard library: ``python -m
distgrad.launcher.rank_main`` would import ``distgrad`` (and numpy with its
thread pool) before OMP_NUM_THREADS is set. ``--dry-run`` imports it as a module
to show what each rank will get.
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

if __package__:  # imported (distgrad.launcher.rank_main)
    from .failure import die, traceback_text
else:  # run by file path: load the sibling without making launcher/ an import root
    import importlib.util as _util

    _spec = _util.spec_from_file_location(
        "distgrad_launcher_failure", os.path.join(os.path.dirname(__file__), "failure.py")
    )
    _failure = _util.module_from_spec(_spec)
    _spec.loader.exec_module(_failure)
    die, traceback_text = _failure.die, _failure.traceback_text

USAGE = "usage: python rank_main.py (SCRIPT | -m MODULE | -c CODE | --exec PROGRAM) [ARGS...]"

#: Thread-pool sizes set per rank (OpenMP, OpenBLAS, MKL).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: ``--gpus-per-node K``: GPUs per node (0: leave CUDA_VISIBLE_DEVICES alone).
GPUS_VAR = "DISTGRAD_GPUS_PER_NODE"
#: ``--oversubscribe-gpus``: ``1`` lets more local ranks than GPUs share them round-robin.
OVERSUBSCRIBE_GPUS_VAR = "DISTGRAD_OVERSUBSCRIBE_GPUS"
#: Where rank 0 runs and a port there, chosen by distgrad-run (torchrun's MASTER_ADDR/PORT).
MASTER_ADDR_VAR, MASTER_PORT_VAR = "DISTGRAD_MASTER_ADDR", "DISTGRAD_MASTER_PORT"
DEFAULT_MASTER_PORT = "29500"  # torchrun's


@dataclass(frozen=True)
class Placement:
    """Where one process sits in the job."""

    rank: int
    size: int
    local_rank: int
    local_size: int


def _slurm_tasks_on_node(spec: str, node_index: int) -> int:
    """Tasks on node ``node_index`` from a Slurm count list such as ``'2(x3),1'``."""
    counts = []
    for item in spec.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item)
        if not match:
            raise ValueError(f"unexpected Slurm task list {spec!r}")
        counts += [int(match[1])] * int(match[2] or 1)
    return counts[node_index]


def placement_from_env(environ: Mapping[str, str]) -> Placement:
    """This process's placement from Open MPI, MPICH hydra or Slurm variables.

    Checked in that order (hydra before Slurm because mpiexec may run inside a Slurm
    job); a process started without any launcher is rank 0 of 1.
    """
    if "OMPI_COMM_WORLD_RANK" in environ:
        keys = (
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
        )
        return Placement(*(int(environ[key]) for key in keys))
    if "MPI_LOCALRANKID" in environ:
        keys = ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS")
        return Placement(*(int(environ[key]) for key in keys))
    if "SLURM_STEP_TASKS_PER_NODE" in environ and "SLURM_LOCALID" in environ:
        return Placement(
            int(environ["SLURM_PROCID"]),
            int(environ["SLURM_NTASKS"]),
            int(environ["SLURM_LOCALID"]),
            _slurm_tasks_on_node(
                environ["SLURM_STEP_TASKS_PER_NODE"], int(environ["SLURM_NODEID"])
            ),
        )
    return Placement(0, 1, 0, 1)


def _cuda_visible(environ: Mapping[str, str]) -> list[str] | None:
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return None
    return [gpu.strip() for gpu in environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]


def nvidia_smi_gpus() -> list[str]:
    """GPU ids of this node, one per ``GPU`` line of ``nvidia-smi -L`` (none without
    nvidia-smi or a working driver)."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [
        str(index)
        for index, _ in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))
    ]


def gpu_for_rank(
    place: Placement, environ: Mapping[str, str], detect: Callable[[], list[str]]
) -> str | None:
    """The CUDA_VISIBLE_DEVICES value for this rank (local rank i gets GPU i), or None to
    leave it alone.

    The node's GPUs are those CUDA_VISIBLE_DEVICES lists, else ``detect()``; with
    ``--gpus-per-node K`` (``DISTGRAD_GPUS_PER_NODE``) there are K of them, numbered
    as CUDA_VISIBLE_DEVICES lists them, else 0..K-1. Nothing is bound without GPUs,
    with ``--gpus-per-node 0``, or when Slurm already bound each task
    (``SLURM_GPUS_PER_TASK``). Raises ValueError when the node has more local ranks
    than GPUs, unless ``DISTGRAD_OVERSUBSCRIBE_GPUS=1``.
    """
    given = environ.get(GPUS_VAR)
    if given is None and "SLURM_GPUS_PER_TASK" in environ:
        return None
    visible = _cuda_visible(environ)
    if given is not None:
        count, source = int(given), f"--gpus-per-node {given}"
        ids = visible or [str(index) for index in range(count)]
    elif visible is not None:
        ids, source = visible, f"CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']}"
        count = len(ids)
    else:
        ids, source = detect(), "nvidia-smi -L"
        count = len(ids)
    if count == 0:
        return None
    if place.local_size > count and environ.get(OVERSUBSCRIBE_GPUS_VAR) != "1":
        raise ValueError(
            f"{place.local_size} local ranks but {count} GPU(s) ({source}), and each rank "
            f"takes one GPU. Lower the ranks per node to {count}, pass --oversubscribe-gpus "
            f"to share the GPUs round-robin, or --gpus-per-node 0 to leave "
            f"CUDA_VISIBLE_DEVICES alone"
        )
    return ids[place.local_rank % count % len(ids)]


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (Slurm, taskset, containers), further
    limited by a cgroup v2 CPU quota (``cpu.max``); ``os.cpu_count()`` counts the whole host."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


def rank_environment(
    place: Placement,
    environ: Mapping[str, str],
    cpu_count: int,
    detect: Callable[[], list[str]] = nvidia_smi_gpus,
) -> dict[str, str]:
    """Variables to set for one rank before the user program starts.

    - ``DISTGRAD_LOCAL_RANK`` / ``DISTGRAD_LOCAL_SIZE`` from the placement, and torchrun's
      ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
      ``MASTER_PORT`` (rank 0's host and a port there, from ``DISTGRAD_MASTER_ADDR/PORT``
      set by distgrad-run; MPI does the rendezvous, so they are for programs that read them);
    - ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``: each one
      already set keeps its value (``--threads-per-rank`` sets all three); the others
      take OMP_NUM_THREADS if set, else ``SLURM_CPUS_PER_TASK``, else this node's
      cores divided by its local ranks (at least 1);
    - ``CUDA_VISIBLE_DEVICES`` from :func:`gpu_for_rank` (ValueError when short of GPUs).
    """
    result = {
        "DISTGRAD_LOCAL_RANK": str(place.local_rank),
        "DISTGRAD_LOCAL_SIZE": str(place.local_size),
        "RANK": str(place.rank),
        "WORLD_SIZE": str(place.size),
        "LOCAL_RANK": str(place.local_rank),
        "LOCAL_WORLD_SIZE": str(place.local_size),
        "MASTER_ADDR": environ.get(MASTER_ADDR_VAR) or environ.get("MASTER_ADDR") or "127.0.0.1",
        "MASTER_PORT": environ.get(MASTER_PORT_VAR)
        or environ.get("MASTER_PORT")
        or DEFAULT_MASTER_PORT,
    }
    threads = (
        environ.get("OMP_NUM_THREADS")
        or environ.get("SLURM_CPUS_PER_TASK")
        or str(max(1, cpu_count // place.local_size))
    )
    for name in THREAD_VARS:
        result[name] = environ.get(name) or threads
    gpu = gpu_for_rank(place, environ, detect)
    if gpu is not None:
        result["CUDA_VISIBLE_DEVICES"] = gpu
    return result


def _run(argv: list[str]) -> None:
    """Run a Python program as ``python ARGV`` would (argv[0]: SCRIPT, -m or -c)."""
    if argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""  # as `python -c` does
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    elif argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's path in argv[0]
        sys.path[0] = os.getcwd()  # as `python -m` does
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python SCRIPT` does
        runpy.run_path(argv[0], run_name="__main__")


def _wrapper_frame(frame) -> bool:
    return frame.f_code.co_filename == __file__ or frame.f_globals.get("__name__") == "runpy"


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``; it survives ``exec``). When the parent is already gone
    (re-parented before the call), exit at once. Does nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(128 + int(signum))


#: The pipe end a rank writes to when it has reported its own failure (see :func:`_watch`).
_reported_fd: list[int] = []


def _mark_reported() -> None:
    """Tell the watching wrapper this rank has said why it fails (no second message)."""
    for fd in _reported_fd:
        try:
            os.write(fd, b"1")
        except OSError:
            pass


def failure_text(place: Placement, pid: int, status: int, python: bool = True) -> str | None:
    """The line naming a rank that ended without reporting why: killed by a signal, or a
    non-zero exit status (``status`` as from ``os.waitpid``); None for a clean exit.
    distgrad-run finds these lines in the job's output (``launcher.outcome``)."""
    where = f"rank {place.rank} (pid {pid} on {socket.gethostname()})"
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"distgrad-run: {where} was killed by signal {name} ({signum})"
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    how = " without a Python exception" if python else ""
    return f"distgrad-run: {where} exited with status {code}{how}"


#: Signals the wrapper passes on to the rank it watches (process managers forward these).
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def _pass_on(pid: int) -> Callable:
    def handler(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    return handler


def _watch(place: Placement, python: bool) -> None:
    """Fork: the child returns and becomes the rank; this process stays as its watcher,
    passes signals on, and when the rank ends without having reported why (a signal,
    ``os._exit``, a crash in C) prints :func:`failure_text`, then ends the same way so the
    process manager sees the rank's own status. The rank dies with its watcher, the watcher
    with its process manager (:func:`die_with_parent`)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        die_with_parent(signal.SIGKILL)
        _reported_fd.append(write_end)
        return
    os.close(write_end)
    # (The PMI connection stays open here too: the process manager then learns of the rank's
    # end from this process's exit, after the message below, not from the socket closing.)
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, _pass_on(pid))
    _, status = os.waitpid(pid, 0)
    os.set_blocking(read_end, False)  # a process the rank forked may hold the write end
    try:
        reported = os.read(read_end, 1) == b"1"
    except BlockingIOError:
        reported = False
    text = None if reported else failure_text(place, pid, status, python)
    if text:
        sys.stderr.write(f"[rank {place.rank}] {text}\n")
        sys.stderr.flush()
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


def _exec(argv: list[str], place: Placement) -> None:
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        _mark_reported()
        die(f"distgrad-run: cannot run {argv[0]!r}: {error.strerror}", place.rank, 1, 127)


def main(argv: list[str] | None = None) -> None:
    """Set up this rank's environment and run the program; abort the job if it fails."""
    argv = sys.argv[1:] if argv is None else argv
    if (
        not argv
        or argv[0] in ("-h", "--help")
        or (argv[0] in ("-c", "-m", "--exec") and len(argv) < 2)
    ):
        sys.exit(USAGE)
    place = placement_from_env(os.environ)
    try:
        os.environ.update(rank_environment(place, os.environ, usable_cpus()))
    except ValueError as error:
        die(f"distgrad-run: on {socket.gethostname()}: {error}", place.rank, 1, 1)
    die_with_parent(signal.SIGKILL)  # the job's process manager (or distgrad-run) is gone
    _watch(place, python=argv[0] != "--exec")
    if argv[0] == "--exec":
        _exec(argv[1:], place)
    for stream in (sys.stdout, sys.stderr):  # live, whole lines: tagged output stays readable
        stream.reconfigure(line_buffering=True, write_through=False)
    try:
        _run(argv)
    except SystemExit as exit_:
        if exit_.code in (None, 0):
            raise
        _mark_reported()
        if isinstance(exit_.code, int):
            text = f"exited with status {exit_.code}" if place.size > 1 else ""
            die(text, place.rank, place.size, exit_.code, reason="exit")
        die(str(exit_.code), place.rank, place.size, 1, reason="exit")
    except BaseException as error:  # noqa: BLE001 - every failure must end the job
        _mark_reported()
        text = traceback_text(type(error), error, error.__traceback__, skip=_wrapper_frame)
        die(text, place.rank, place.size, 1)


if __name__ == "__main__":
    main()
