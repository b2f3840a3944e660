"""``distgrad-run``: command-line options and dispatch (run, ``--dry-run`` or ``--check``)."""

from __future__ import annotations

import argparse
import sys

from . import LaunchError
from .check import run_check
from .env import ALLOW_NAMES, ALLOW_PREFIXES
from .mpi_flavor import FLAVORS
from .plan import describe, plan_here
from .supervise import run_supervised

EPILOG = f"""\
Each rank runs `python .../launcher/rank_main.py SCRIPT ARGS`, which sets
DISTGRAD_LOCAL_RANK/DISTGRAD_LOCAL_SIZE, OMP_NUM_THREADS (cores / local ranks,
unless set) and CUDA_VISIBLE_DEVICES (one GPU by local rank) and aborts the whole
job when the script fails. Ranks receive these variables from this environment:
{", ".join(ALLOW_NAMES)} and {"*, ".join(ALLOW_PREFIXES)}*, plus -x NAME.

examples:
  distgrad-run -np 4 examples/train_data_parallel.py --epochs 2
  distgrad-run -H node1:4,node2:4 --iface eth0 examples/train_data_parallel.py
  distgrad-run --hostfile hosts.txt --check
  distgrad-run --launcher srun examples/train_data_parallel.py   (in sbatch/salloc)
"""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of distgrad-run."""
    parser = argparse.ArgumentParser(
        prog="distgrad-run",
        description="Start a distgrad program on one or many nodes through mpiexec or srun.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-np", "-n", dest="np", type=_positive, metavar="N",
                        help="number of ranks (default: all slots of -H/--hostfile, else 1; "
                             "with srun: the allocation's task count)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-H", "--hosts", metavar="HOST[:SLOTS],...",
                       help="hosts to run on, e.g. node1:4,node2:4 (default: this machine)")
    where.add_argument("--hostfile", metavar="FILE",
                       help="one host per line: 'host', 'host:N' or 'host slots=N'; # comments")
    parser.add_argument("--oversubscribe", action="store_true",
                        help="allow more ranks than slots (this machine has one slot per core)")
    parser.add_argument("--launcher", choices=("auto", *FLAVORS), default="auto",
                        help="auto: detect MPICH or Open MPI from `mpiexec --version`")
    parser.add_argument("--mpiexec", metavar="PATH",
                        help="mpiexec (or srun) to use (default: beside this Python, then PATH)")
    parser.add_argument("--ssh", metavar="PROGRAM",
                        help="remote shell used to reach the hosts instead of ssh")
    parser.add_argument("--iface", metavar="NAME",
                        help="network interface for MPI traffic, e.g. eth0 or ib0 (also sets "
                             "FI_TCP_IFACE and NCCL_SOCKET_IFNAME unless they are set)")
    parser.add_argument("-x", dest="env", action="append", default=[], metavar="NAME[=VALUE]",
                        help="also forward variable NAME (optionally set to VALUE); repeatable")
    parser.add_argument("--no-tag-output", dest="tag_output", action="store_false",
                        help="do not prefix output lines with the rank")
    parser.add_argument("--no-gpu-bind", dest="gpu_bind", action="store_false",
                        help="leave CUDA_VISIBLE_DEVICES as it is instead of one GPU per rank")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="stop the whole job after this long (exit status 124)")
    parser.add_argument("--grace", type=_seconds, default=5.0, metavar="SECONDS",
                        help="wait this long after SIGTERM before SIGKILL (default: 5)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print the command and each rank's environment; run nothing")
    mode.add_argument("--check", action="store_true",
                      help="probe the launcher, MPI, hosts and network with a 2-rank allreduce")
    parser.add_argument("program", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS...]",
                        help="Python script to run on every rank, and its arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``distgrad-run``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.program and not args.check:
        parser.error("no script given (distgrad-run [options] SCRIPT [ARGS...])")
    try:
        if args.check:
            return run_check(args)
        plan = plan_here(args)
        if args.dry_run:
            print(describe(plan))
            return 0
        return run_supervised(plan.command, plan.env, args.timeout, args.grace)
    except LaunchError as error:
        print(f"distgrad-run: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
