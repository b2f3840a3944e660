"""Turn the command-line options into a launch plan: launcher, command, environment,
and what each rank will get. ``--dry-run`` prints :func:`describe` of it."""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import LaunchError
from .command import rank_argv
from .env import forwarded_names, parse_env_options
from .hosts import Host, parse_host_list, parse_hostfile, place_ranks
from .mpi_flavor import FLAVOR_NAMES, LaunchOptions, build_command, detect_flavor, find_program
from .rank_main import (
    GPUS_VAR,
    MASTER_ADDR_VAR,
    OVERSUBSCRIBE_GPUS_VAR,
    THREAD_VARS,
    Placement,
    nvidia_smi_gpus,
    rank_environment,
    usable_cpus,
)

__all__ = ["Here", "Plan", "describe", "here", "hosts_of", "make_plan", "plan_here"]


@dataclass(frozen=True)
class Here:
    """The machine distgrad-run runs on (the only host when no host list is given)."""

    cpu_count: int
    hostname: str
    python: str  # runs bare *.py scripts and the wrapper of other programs
    root: bool
    gpus: Callable[[], list[str]] = nvidia_smi_gpus  # GPU ids here, when asked


def here() -> Here:
    """This machine, this Python."""
    return Here(usable_cpus(), socket.gethostname(), sys.executable, os.geteuid() == 0)


@dataclass(frozen=True)
class RankPreview:
    """What one rank is planned to get."""

    rank: int
    host: str
    env: dict[str, str]


@dataclass(frozen=True)
class Plan:
    """Everything needed to start the job, or to describe it."""

    flavor: str
    hosts: list[Host]  # empty: this machine only
    command: list[str]
    env: dict[str, str]  # environment of the mpiexec/srun process
    forwarded: list[str]  # names every rank receives (mpiexec)
    changed: list[str]  # names -x or the options set or changed in env
    ranks: list[RankPreview] | None  # None when Slurm places the ranks
    machine: Here


#: torchrun's per-rank variables (rank_main sets them); --dry-run shows them once.
TORCHRUN_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def hosts_of(args: argparse.Namespace) -> list[Host]:
    """The host list (a hostfile is read each time), with torchrun's ``--nnodes`` (the first N hosts) and
    ``--nproc-per-node`` (that many slots on each) applied."""
    if args.hosts:
        hosts = parse_host_list(args.hosts)
    elif args.hostfile:
        hosts = parse_hostfile(args.hostfile)
    else:
        return []
    nnodes = getattr(args, "nnodes", None)
    if nnodes is not None:
        if nnodes > len(hosts):
            raise LaunchError(f"--nnodes {nnodes} but only {len(hosts)} host(s) are listed")
        hosts = hosts[:nnodes]
    per_node = getattr(args, "nproc_per_node", None)
    if per_node is not None:
        hosts = [Host(h.name, per_node, max(per_node, h.max_slots or per_node)) for h in hosts]
    return hosts


def _nprocs(args: argparse.Namespace, hosts: list[Host]) -> int | None:
    """-np, else --nproc-per-node x nodes, else every slot of the hosts, else 1 (None under
    srun without -np: the allocation decides)."""
    per_node, nnodes = getattr(args, "nproc_per_node", None), getattr(args, "nnodes", None)
    implied = None
    if per_node is not None:
        implied = per_node * (len(hosts) if hosts else (nnodes or 1))
    if args.np is not None and implied is not None and args.np != implied:
        raise LaunchError(
            f"-np {args.np} disagrees with --nproc-per-node {per_node} on "
            f"{len(hosts) if hosts else nnodes or 1} node(s) ({implied} ranks); give one of them"
        )
    return args.np or implied


def _launcher(
    args: argparse.Namespace, environ: Mapping[str, str], hosts: list[Host]
) -> tuple[str, str]:
    """(flavor, path of mpiexec or srun). ``auto`` means srun inside a Slurm job unless
    hosts or a remote shell are named, else mpiexec, whose MPI is detected."""
    launcher = args.launcher
    if launcher == "auto":
        in_slurm = "SLURM_JOB_ID" in environ and not (hosts or args.ssh)
        launcher = "srun" if in_slurm else "mpiexec"
        nnodes = getattr(args, "nnodes", None)
        if launcher == "mpiexec" and not hosts and nnodes not in (None, 1):
            raise LaunchError(
                f"--nnodes {nnodes} needs the nodes: list them with -H/--hostfile, or run "
                f"inside a Slurm allocation (srun places the ranks)"
            )
        single = not hosts and not args.ssh and not args.mpiexec
        if launcher == "mpiexec" and single and _nprocs(args, hosts) in (None, 1):
            return "local", ""  # one rank here: no mpiexec needed
    if launcher == "srun":
        if hosts or args.ssh:
            raise LaunchError(
                "--launcher srun takes nodes from the Slurm allocation; drop -H/--hostfile/--ssh "
                "and choose nodes with sbatch/salloc (-N, --nodelist) instead"
            )
        return "srun", args.mpiexec or find_program("srun")
    program = args.mpiexec or find_program("mpiexec")
    return args.mpi_flavor or detect_flavor(program), program


def _job_environment(
    args: argparse.Namespace, environ: Mapping[str, str], hosts: list[Host]
) -> tuple[dict, list]:
    """The environment mpiexec/srun gets (ours, -x and the options' variables) and the
    ``-x`` names."""
    extra = parse_env_options(args.env, environ)
    env = {**environ, **extra}
    if args.iface:  # UCX_NET_DEVICES is left alone: it names RDMA devices (mlx5_0:1) too
        env.setdefault("FI_TCP_IFACE", args.iface)
        env.setdefault("NCCL_SOCKET_IFNAME", args.iface)
    if args.threads_per_rank:
        env.update(dict.fromkeys(THREAD_VARS, str(args.threads_per_rank)))
    if args.gpus_per_node is not None:
        env[GPUS_VAR] = str(args.gpus_per_node)
    if args.oversubscribe_gpus:
        env[OVERSUBSCRIBE_GPUS_VAR] = "1"
    if hosts:  # torchrun's MASTER_ADDR: where rank 0 runs
        env.setdefault(MASTER_ADDR_VAR, hosts[0].name)
    return env, list(extra)


def _previews(
    rank_hosts: list[str], env: Mapping[str, str], machine: Here, local_only: bool
) -> list[RankPreview]:
    """What each rank gets. Threads assume every host has this machine's cores; GPUs
    are detected here only when this machine is the only host."""
    gpus = functools.cache(machine.gpus) if local_only else (lambda: [])  # asked at most once
    previews = []
    for rank, host in enumerate(rank_hosts):
        place = Placement(
            rank, len(rank_hosts), rank_hosts[:rank].count(host), rank_hosts.count(host)
        )
        try:
            rank_env = rank_environment(place, env, machine.cpu_count, gpus)
        except ValueError as error:
            raise LaunchError(f"host {host}: {error}") from None
        previews.append(RankPreview(rank, host, rank_env))
    return previews


def make_plan(args: argparse.Namespace, environ: Mapping[str, str], machine: Here) -> Plan:
    """Check the options and build the plan; raises LaunchError on bad input."""
    hosts = hosts_of(args)
    flavor, program = _launcher(args, environ, hosts)
    env, extra = _job_environment(args, environ, hosts)
    if flavor == "srun":
        nprocs, ranks = _nprocs(args, hosts), None  # Slurm places the ranks
    else:
        nprocs = _nprocs(args, hosts) or (sum(host.slots for host in hosts) if hosts else 1)
        local = Host(machine.hostname, machine.cpu_count)
        rank_hosts = place_ranks(hosts or [local], nprocs, args.oversubscribe)
        ranks = _previews(rank_hosts, env, machine, local_only=not hosts)
    forwarded = forwarded_names(env, extra)
    opts = LaunchOptions(
        nprocs=nprocs,
        hosts=hosts,
        oversubscribe=args.oversubscribe,
        iface=args.iface,
        ssh=args.ssh,
        tag_output=args.tag_output,
        forward=forwarded,
        cpus_per_task=env.get("SLURM_CPUS_PER_TASK"),
        as_root=machine.root,
        nodes=getattr(args, "nnodes", None),
        per_node=getattr(args, "nproc_per_node", None),
    )
    command = build_command(flavor, program, opts, rank_argv(args.command, machine.python))
    changed = sorted(name for name in env if environ.get(name) != env[name])
    return Plan(flavor, hosts, command, env, forwarded, changed, ranks, machine)


def plan_here(args: argparse.Namespace) -> Plan:
    """:func:`make_plan` for this machine, this environment and this Python."""
    return make_plan(args, os.environ, here())


_SLURM_RANKS = (
    "per rank: placed by Slurm; each rank sets RANK, WORLD_SIZE, LOCAL_RANK, "
    "LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (torchrun's) and DISTGRAD_LOCAL_RANK/SIZE from "
    "SLURM_LOCALID/SLURM_STEP_TASKS_PER_NODE, OMP/OPENBLAS/MKL_NUM_THREADS (unless set) "
    "from SLURM_CPUS_PER_TASK or cores / local ranks, and CUDA_VISIBLE_DEVICES to GPU i "
    "for local rank i (unless --gpus-per-node 0 or Slurm bound it with --gpus-per-task)"
)
_REMOTE_GPUS = (
    "  CUDA_VISIBLE_DEVICES: on each host, local rank i takes GPU i of those "
    "`nvidia-smi -L` lists there, if any (--gpus-per-node K sets the count and shows it here)"
)


def describe(plan: Plan) -> str:
    """Human-readable plan: the exact command, the forwarded variables, and the
    variables each rank sets for itself at start-up."""
    lines = [f"launcher: {FLAVOR_NAMES[plan.flavor]}", "command:", "  " + shlex.join(plan.command)]
    if plan.flavor in ("srun", "local"):
        names = plan.changed
        how = "srun --export=ALL" if plan.flavor == "srun" else "one local process"
        lines.append(
            f"forwarded to every rank: the whole environment ({how})" + (", with:" if names else "")
        )
    else:
        names = plan.forwarded
        lines.append("forwarded to every rank (the allow-list and -x):")
    lines += [f"  {name}={shlex.quote(plan.env[name])}" for name in names]
    if plan.ranks is None:
        lines.append(_SLURM_RANKS)
        return "\n".join(lines)
    lines.append(f"per rank (threads from {plan.machine.cpu_count} cores per host, as here):")
    for preview in plan.ranks:
        values = " ".join(
            f"{name}={value}" for name, value in preview.env.items() if name not in TORCHRUN_VARS
        )
        lines.append(f"  rank {preview.rank} on {preview.host}: {values}")
    first = plan.ranks[0].env
    lines.append(
        "  and torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (the same numbers), "
        f"MASTER_ADDR={first['MASTER_ADDR']} MASTER_PORT={first['MASTER_PORT']}"
    )
    if plan.hosts and not any(name in plan.env for name in (GPUS_VAR, "CUDA_VISIBLE_DEVICES")):
        lines.append(_REMOTE_GPUS)
    return "\n".join(lines)
