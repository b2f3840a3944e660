"""``distgrad-run``: command-line options and dispatch (run, ``--dry-run`` or ``--check``)."""

from __future__ import annotations

import argparse
import sys
import textwrap

from . import LaunchError
from .check import run_check
from .elastic import run_with_restarts
from .env import ALLOW_NAMES, ALLOW_PREFIXES
from .mpi_flavor import MPI_FLAVORS
from .plan import describe, plan_here

USAGE = """\
distgrad-run -np N [-H host1:slots,host2:slots | --hostfile FILE] [--launcher auto|mpiexec|srun]
                    [--nproc-per-node N] [--nnodes M] [--gpus-per-node K]
                    [--threads-per-rank T] [--timeout SECONDS] [--dry-run] [--check]
                    [--max-restarts K [--min-np M]]
                    [--tag-output] [-x VAR[=VALUE]]... [-v] [--version] [ADVANCED OPTIONS]
                    [--] COMMAND [ARGS...]
(also: python -m distgrad.launcher ...)"""

EPILOG = f"""\
COMMAND runs on every rank, as with mpirun. A Python program (python [OPTIONS]
SCRIPT | -m MODULE | -c CODE, or just SCRIPT.py) runs under the per-rank
wrapper launcher/rank_main.py, so an uncaught exception on any rank prints its
traceback ([rank N] on every line) and aborts the whole job; distgrad-run exits
with the failing rank's status (124 after --timeout). Any other program starts
through the same wrapper, which sets the variables and then execs it.

Each rank gets torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR (rank 0's host) and MASTER_PORT (29500 unless set), and
DISTGRAD_LOCAL_RANK/DISTGRAD_LOCAL_SIZE (its index among the
ranks on its node, and their number), OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS (--threads-per-rank, else those already set, else cores / local
ranks) and CUDA_VISIBLE_DEVICES=GPU i for local rank i (GPUs from
--gpus-per-node, else CUDA_VISIBLE_DEVICES or `nvidia-smi -L` on the node; none:
no binding). mpiexec forwards only these variables of this environment, plus
-x VAR (srun forwards all of it):
{
    textwrap.fill(
        ", ".join([*ALLOW_NAMES, *(prefix + "*" for prefix in ALLOW_PREFIXES)]),
        78,
        initial_indent="  ",
        subsequent_indent="  ",
    )
}

examples:
  distgrad-run -np 2 python examples/train_data_parallel.py --epochs 3
  distgrad-run --nproc-per-node 4 train.py           (torchrun style; -np 1 needs no mpiexec)
  distgrad-run -np 2 --dry-run -x SEED=1 python -m mypackage.train
  distgrad-run -H node1:4,node2:4 --iface eth0 python examples/train_data_parallel.py
  distgrad-run --hostfile cluster/hostfile.example --iface eth0 --check
  distgrad-run python examples/train_data_parallel.py     (inside sbatch/salloc: runs srun)
"""


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"distgrad-run (distgrad {version('distgrad')})"
    except Exception:  # not installed (run from a source tree)
        return "distgrad-run (distgrad, version unknown: not installed)"


def build_parser(prog: str = "distgrad-run") -> argparse.ArgumentParser:
    """The argument parser of distgrad-run."""
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=USAGE,
        description="Start COMMAND as the ranks of an MPI job on one or many nodes, through\n"
        "mpiexec (MPICH/hydra or Open MPI, detected) or Slurm's srun.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "-np",
        "-n",
        dest="np",
        type=_count(1),
        metavar="N",
        help="number of ranks (default: all slots of -H/--hostfile, else 1; "
        "with srun: the allocation's task count)",
    )
    add(
        "--nproc-per-node",
        "--nproc_per_node",
        dest="nproc_per_node",
        type=_count(1),
        metavar="N",
        help="torchrun's option: N ranks on each node (with -H/--hostfile: on each host; "
        "-np defaults to N x nodes)",
    )
    add(
        "--nnodes",
        type=_count(1),
        metavar="M",
        help="torchrun's option: run on M nodes (the first M of -H/--hostfile, or srun's "
        "--nodes inside a Slurm allocation)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-H",
        "--hosts",
        metavar="HOST[:SLOTS],...",
        help="hosts to run on, e.g. node1:4,node2:4 (default: this machine)",
    )
    where.add_argument(
        "--hostfile",
        metavar="FILE",
        help="one host per line: 'host', 'host:N' or 'host slots=N'; # comments",
    )
    add(
        "--launcher",
        choices=("auto", "mpiexec", "srun"),
        default="auto",
        help="auto (default): srun inside a Slurm job (SLURM_JOB_ID set) unless -H/--hostfile/"
        "--ssh is given, else mpiexec",
    )
    add(
        "--gpus-per-node",
        type=_count(0),
        metavar="K",
        help="GPUs per node: local rank i gets GPU i (CUDA_VISIBLE_DEVICES); more local ranks "
        "than K is an error unless --oversubscribe-gpus. Default: detected on each node "
        "(CUDA_VISIBLE_DEVICES, nvidia-smi -L); 0: no binding",
    )
    add(
        "--threads-per-rank",
        type=_count(1),
        metavar="T",
        help="OMP/OPENBLAS/MKL_NUM_THREADS of every rank (default: as set, else cores / "
        "local ranks)",
    )
    add(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="stop the whole job after this long (exit status 124)",
    )
    add(
        "--max-restarts",
        "--max_restarts",
        dest="max_restarts",
        type=_count(0),
        default=0,
        metavar="K",
        help="torchrun's option: when a rank fails, end the job and start it again, at most K "
        "times (the program resumes from its last checkpoint); ranks get "
        "TORCHELASTIC_RESTART_COUNT and TORCHELASTIC_MAX_RESTARTS (default: 0)",
    )
    add(
        "--min-np",
        dest="min_np",
        type=_count(1),
        metavar="M",
        help="with --max-restarts: relaunch on the slots left when the hosts lost some "
        "(the --hostfile is read again before each restart), as long as at least M remain",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="print the command and each rank's environment; run nothing",
    )
    mode.add_argument(
        "--check",
        action="store_true",
        help="preflight: launcher, MPI, hosts, network and a 2-rank allreduce, "
        "each probe bounded in time, with a verdict line",
    )
    add("--tag-output", action="store_true", help="prefix every output line with its rank")
    add("-v", "--verbose", action="store_true", help="print the command line before running it")
    add("--version", action="version", version=_version(), help="print the version and exit")
    add(
        "-x",
        dest="env",
        action="append",
        default=[],
        metavar="VAR[=VALUE]",
        help="also forward variable VAR (optionally set to VALUE); repeatable",
    )

    advanced = parser.add_argument_group("advanced options")
    advanced.add_argument(
        "--oversubscribe",
        action="store_true",
        help="allow more ranks than slots (this machine: one slot per core)",
    )
    advanced.add_argument(
        "--oversubscribe-gpus",
        action="store_true",
        help="allow more local ranks than GPUs; they share GPUs round-robin",
    )
    advanced.add_argument(
        "--iface",
        metavar="NAME",
        help="network interface for MPI traffic, e.g. eth0 or ib0 (also sets "
        "FI_TCP_IFACE and NCCL_SOCKET_IFNAME unless they are set)",
    )
    advanced.add_argument(
        "--ssh", metavar="PROGRAM", help="remote shell used to reach the hosts instead of ssh"
    )
    advanced.add_argument(
        "--mpiexec",
        metavar="PATH",
        help="the mpiexec (with --launcher srun: the srun) to run (default: "
        "beside this Python, then on PATH)",
    )
    advanced.add_argument(
        "--mpi-flavor",
        choices=MPI_FLAVORS,
        help="the MPI of mpiexec, instead of detecting it from `mpiexec "
        "--version` (mpich: any hydra mpiexec, e.g. Intel MPI)",
    )
    advanced.add_argument(
        "--grace",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="after --timeout or Ctrl-C, wait this long after SIGTERM before SIGKILL (default: 5)",
    )
    add(
        "command",
        nargs=argparse.REMAINDER,
        metavar="COMMAND [ARGS...]",
        help="the program every rank runs, e.g. python train.py --epochs 3",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed options; exits with a usage message when they are wrong."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command and not args.check:
        parser.error("no COMMAND given (e.g. distgrad-run -np 2 python train.py)")
    if args.min_np is not None and args.np is not None and args.min_np > args.np:
        parser.error(f"--min-np {args.min_np} is more than -np {args.np}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``distgrad-run``; returns the exit status."""
    args = parse_args(argv)
    try:
        if args.check:
            return run_check(args)
        if args.dry_run:
            print(describe(plan_here(args)))
            return 0
        return run_with_restarts(args)
    except LaunchError as error:
        print(f"distgrad-run: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
