"""Find the process starter (mpiexec or srun), tell MPICH from Open MPI, build its command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from . import LaunchError
from .hosts import Host

#: Launchers distgrad-run can drive; ``mpich`` covers hydra-based mpiexec (MPICH, Intel MPI).
FLAVORS = ("mpich", "openmpi", "srun", "local")
#: What ``--mpi-flavor`` may force instead of detecting it from ``mpiexec --version``.
MPI_FLAVORS = ("mpich", "openmpi")
FLAVOR_NAMES = {
    "mpich": "MPICH (hydra)",
    "openmpi": "Open MPI",
    "srun": "Slurm srun",
    "local": "none (-np 1: one process started directly, no mpiexec)",
}


def find_program(name: str) -> str:
    """Path of ``mpiexec`` or ``srun``: the one beside this Python first (the pip
    ``mpich`` package installs mpiexec there, matching mpi4py), then ``PATH``."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if not found:
        hint = "install MPI (pip install mpich mpi4py) or pass --mpiexec PATH"
        if name == "srun":
            hint = "run inside a Slurm cluster or pass --mpiexec PATH-TO-SRUN"
        raise LaunchError(f"{name} not found beside {sys.executable} or on PATH; {hint}")
    return found


def detect_flavor(mpiexec: str) -> str:
    """``'mpich'`` or ``'openmpi'``, from the output of ``mpiexec --version``."""
    try:
        result = subprocess.run(
            [mpiexec, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LaunchError(f"cannot run {mpiexec} --version: {error}") from None
    text = result.stdout + result.stderr
    if "HYDRA" in text or "Intel(R) MPI" in text:
        return "mpich"
    if "Open MPI" in text or "OpenRTE" in text:
        return "openmpi"
    first = text.strip().splitlines()[0] if text.strip() else "(no output)"
    raise LaunchError(
        f"{mpiexec} --version says {first!r}, which is neither MPICH (hydra) nor Open MPI; "
        f"pass --mpi-flavor mpich (hydra-based mpiexec) or --mpi-flavor openmpi"
    )


@dataclass(frozen=True)
class LaunchOptions:
    """What the command line must express, independent of the launcher."""

    nprocs: int | None  # None: srun takes the task count from the allocation
    hosts: list[Host]  # empty: run on this machine
    oversubscribe: bool
    iface: str | None
    ssh: str | None
    tag_output: bool
    forward: list[str]  # names of the variables every rank receives
    cpus_per_task: str | None = None  # srun: SLURM_CPUS_PER_TASK of the allocation
    as_root: bool = False  # Open MPI refuses to start as root without being told
    nodes: int | None = None  # srun: --nnodes
    per_node: int | None = None  # srun: --nproc-per-node


def _mpich(opts: LaunchOptions) -> list[str]:
    args = ["-n", str(opts.nprocs)]
    if opts.hosts:
        args += ["-hosts", ",".join(host.spec for host in opts.hosts)]
    if opts.ssh:
        args += ["-launcher", "ssh", "-launcher-exec", opts.ssh]
    if opts.iface:
        args += ["-iface", opts.iface]
    if opts.tag_output:
        args.append("-prepend-rank")
    if opts.forward:
        args += ["-genvlist", ",".join(opts.forward)]
    return args


def _openmpi(opts: LaunchOptions) -> list[str]:
    args = ["-np", str(opts.nprocs)]
    if opts.hosts:
        args += ["--host", ",".join(host.spec for host in opts.hosts)]
    # Without a host list distgrad-run has checked -np against this machine's logical
    # cores; Open MPI would count physical cores only.
    if opts.oversubscribe or not opts.hosts:
        args.append("--oversubscribe")
    if opts.as_root:
        args.append("--allow-run-as-root")
    if opts.ssh:
        args += ["--mca", "plm_rsh_agent", opts.ssh]
    if opts.iface:
        args += [
            "--mca",
            "btl_tcp_if_include",
            opts.iface,
            "--mca",
            "oob_tcp_if_include",
            opts.iface,
        ]
    if opts.tag_output:
        args.append("--tag-output")
    for name in opts.forward:
        args += ["-x", name]
    return args


def _srun(opts: LaunchOptions) -> list[str]:
    args = ["--mpi=pmi2", "--kill-on-bad-exit=1"]
    if opts.nprocs is not None:
        args.append(f"--ntasks={opts.nprocs}")
    if opts.nodes is not None:
        args.append(f"--nodes={opts.nodes}")
    if opts.per_node is not None:
        args.append(f"--ntasks-per-node={opts.per_node}")
    if opts.cpus_per_task:  # srun does not inherit it from sbatch since Slurm 22.05
        args.append(f"--cpus-per-task={opts.cpus_per_task}")
    if opts.oversubscribe:
        args.append("--overcommit")
    if opts.tag_output:
        args.append("--label")
    return args


_BUILDERS = {"mpich": _mpich, "openmpi": _openmpi, "srun": _srun}


def build_command(
    flavor: str, program: str, opts: LaunchOptions, rank_argv: list[str]
) -> list[str]:
    """The full command line: ``program`` (mpiexec/srun), its options, then ``rank_argv``.

    srun forwards the whole environment itself (``--export=ALL``); mpiexec is
    given the allow-list explicitly (``-genvlist`` / ``-x``). ``local`` (one rank here) is
    the rank's command alone.
    """
    if flavor == "local":
        return list(rank_argv)
    return [program, *_BUILDERS[flavor](opts), *rank_argv]
