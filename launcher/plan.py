"""Turn the command-line options into a launch plan: launcher, command, environment,
and what each rank will get. ``--dry-run`` prints :func:`describe` of it."""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
from dataclasses import dataclass
from typing import Mapping

from . import LaunchError
from .env import forwarded_names, parse_env_options
from .hosts import Host, parse_host_list, parse_hostfile, place_ranks
from .mpi_flavor import FLAVOR_NAMES, LaunchOptions, build_command, detect_flavor, find_program
from .rank_main import GPU_BIND_VAR, Placement, rank_environment, visible_gpus

#: The per-rank wrapper every rank runs first, by path (see :mod:`.rank_main`).
RANK_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rank_main.py")


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
    forwarded: list[str]  # names every rank receives
    ranks: list[RankPreview] | None  # None when Slurm places the ranks
    cpu_count: int


def _hosts(args: argparse.Namespace) -> list[Host]:
    if args.hosts:
        return parse_host_list(args.hosts)
    if args.hostfile:
        return parse_hostfile(args.hostfile)
    return []


def _launcher(args: argparse.Namespace) -> tuple[str, str]:
    """(flavor, path of mpiexec or srun)."""
    if args.launcher == "srun":
        return "srun", args.mpiexec or find_program("srun")
    program = args.mpiexec or find_program("mpiexec")
    return (detect_flavor(program) if args.launcher == "auto" else args.launcher), program


def _previews(
    rank_hosts: list[str], env: Mapping[str, str], cpu_count: int
) -> list[RankPreview]:
    previews = []
    gpus = visible_gpus(env)
    for rank, host in enumerate(rank_hosts):
        place = Placement(
            rank,
            len(rank_hosts),
            rank_hosts[:rank].count(host),
            rank_hosts.count(host),
        )
        previews.append(RankPreview(rank, host, rank_environment(place, env, cpu_count, gpus)))
    return previews


def make_plan(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    cpu_count: int,
    hostname: str,
    python: str,
) -> Plan:
    """Check the options and build the plan; raises LaunchError on bad input.

    ``cpu_count`` and ``hostname`` describe this machine (the local "host" when no
    host list is given); ``python`` is the interpreter every rank runs.
    """
    hosts = _hosts(args)
    flavor, program = _launcher(args)
    if flavor == "srun" and (hosts or args.ssh):
        raise LaunchError(
            "--launcher srun takes nodes from the Slurm allocation; drop -H/--hostfile/--ssh "
            "and choose nodes with sbatch/salloc (-N, --nodelist) instead"
        )
    extra = parse_env_options(args.env, environ)
    env = {**environ, **extra}
    if args.iface:  # UCX_NET_DEVICES is left alone: it names RDMA devices (mlx5_0:1) too
        env.setdefault("FI_TCP_IFACE", args.iface)
        env.setdefault("NCCL_SOCKET_IFNAME", args.iface)
    if not args.gpu_bind:
        env[GPU_BIND_VAR] = "none"

    if flavor == "srun":
        nprocs, ranks = args.np, None  # Slurm knows the resources and places the ranks
    else:
        nprocs = args.np or (sum(host.slots for host in hosts) if hosts else 1)
        rank_hosts = place_ranks(hosts or [Host(hostname, cpu_count)], nprocs, args.oversubscribe)
        ranks = _previews(rank_hosts, env, cpu_count)

    forwarded = forwarded_names(env, extra)
    opts = LaunchOptions(
        nprocs=nprocs,
        hosts=hosts,
        oversubscribe=args.oversubscribe,
        iface=args.iface,
        ssh=args.ssh,
        tag_output=args.tag_output,
        forward=forwarded,
    )
    rank_argv = [python, RANK_MAIN, *args.program]
    command = build_command(flavor, program, opts, rank_argv)
    return Plan(flavor, hosts, command, env, forwarded, ranks, cpu_count)


def plan_here(args: argparse.Namespace) -> Plan:
    """:func:`make_plan` for this machine, this environment and this Python."""
    return make_plan(args, os.environ, os.cpu_count() or 1, socket.gethostname(), sys.executable)


def describe(plan: Plan) -> str:
    """Human-readable plan: the exact command, the forwarded variables, and the
    variables each rank sets for itself at start-up."""
    lines = [f"launcher: {FLAVOR_NAMES[plan.flavor]}", "command:", "  " + shlex.join(plan.command)]
    if plan.flavor == "srun":
        lines.append("forwarded to every rank: the whole environment (srun --export=ALL)")
    else:
        lines.append("forwarded to every rank:")
        lines += [f"  {name}={shlex.quote(plan.env[name])}" for name in plan.forwarded]
    if plan.ranks is None:
        lines.append(
            "per rank: placed by Slurm; each rank sets DISTGRAD_LOCAL_RANK/SIZE from "
            "SLURM_LOCALID/SLURM_STEP_TASKS_PER_NODE, OMP_NUM_THREADS from "
            "SLURM_CPUS_PER_TASK (or cores / local ranks) and CUDA_VISIBLE_DEVICES "
            "by local rank"
        )
    else:
        lines.append(f"per rank (threads assume {plan.cpu_count} cores per host, as here):")
        for preview in plan.ranks:
            values = " ".join(f"{name}={value}" for name, value in preview.env.items())
            lines.append(f"  rank {preview.rank} on {preview.host}: {values}")
    return "\n".join(lines)
