"""ZeRO-2 and ZeRO-3 (``fully_shard``) training steps against DistributedDataParallel on the
MLP 784-1024-1024-10 (float32, per-rank batch 128, one thread per rank, 2 ranks). Goals:
ZeRO-2 / DDP <= 1.15, ZeRO-3 / DDP <= 1.3.

Two methods (benchmarks/README.md says why both, and which one the goal is judged by):

- ``--method jobs`` (default, what a training loop does): one model per 2-rank job, steps back
  to back without a barrier; the jobs for DDP, ZeRO-2 and ZeRO-3 alternate ``--rounds`` times
  (order rotated). Per job: the median step (wall, process CPU, and process CPU less the time spent polling
  in the communicator's wait loop, i.e. the rank's own work; max over ranks); reported: the
  median over the rounds of those medians, and the median of the per-round ratios to DDP.
- ``--method interleaved``: the three models in one job, a barrier before each step, order
  rotated (the earlier method; the models share caches and allocator state).

``--profile MODE``: one job of MODE with cProfile on rank 0 over the steps after warm-up
(cumulative and own times of the top functions, ms per step).

    python benchmarks/bench_zero.py                      # jobs, 3 rounds of 30 steps
    python benchmarks/bench_zero.py --method interleaved --steps 20
    python benchmarks/bench_zero.py --profile ZeRO-2 --steps 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MLP_SIZES, make_distgrad_step, make_mlp, spawn_mpi  # noqa: E402

BATCH = 128
MODES = ("DDP", "ZeRO-2", "ZeRO-3")


def sharded(reshard_after_forward: bool):
    from distgrad.distributed.fsdp import fully_shard

    model = make_mlp()
    for layer in model:
        if any(True for _ in layer.parameters()):
            fully_shard(layer, reshard_after_forward=reshard_after_forward)
    return fully_shard(model, reshard_after_forward=reshard_after_forward)


def make_step(mode: str):
    import distgrad.distributed as dist

    if mode == "DDP":
        return make_distgrad_step(dist.DistributedDataParallel(make_mlp()))
    return make_distgrad_step(sharded(mode == "ZeRO-3"))


def child(args) -> None:
    """Runs on every rank: time the modes asked for."""
    import numpy as np
    from mpi4py import MPI

    import distgrad as dg
    import distgrad.distributed as dist

    dist.init()
    comm = dist.get_communicator().comm
    waited = _count_waits()
    rank = comm.Get_rank()
    names = args.modes.split(",")
    steps = {name: make_step(name) for name in names}
    rng = np.random.default_rng(rank)
    x = dg.from_numpy(rng.normal(size=(BATCH, MLP_SIZES[0])).astype(np.float32))
    y = dg.from_numpy(rng.integers(0, MLP_SIZES[-1], BATCH))
    for step in steps.values():  # warm up (and record the forward order)
        for _ in range(3):
            step(x, y)
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}
    work = {name: [] for name in names}
    profile = None
    if args.profile and rank == 0:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    for i in range(args.steps):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            if args.barrier:
                comm.Barrier()
            start, start_cpu, start_wait = time.perf_counter(), time.process_time(), waited[0]
            steps[name](x, y)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            work[name].append(cpu[name][-1] - (waited[0] - start_wait))
    if profile is not None:
        profile.disable()
    medians = {n: comm.allreduce(float(np.median(t)), op=MPI.MAX) for n, t in times.items()}
    cpu_medians = {n: comm.allreduce(float(np.median(t)), op=MPI.MAX) for n, t in cpu.items()}
    work_medians = {n: comm.allreduce(float(np.median(t)), op=MPI.MAX) for n, t in work.items()}
    if rank == 0:
        for name in names:
            print(
                f"RESULT {name} {medians[name]:.6f} {cpu_medians[name]:.6f} "
                f"{work_medians[name]:.6f}",
                flush=True,
            )
        if profile is not None:
            import pstats

            for key in ("cumulative", "tottime"):
                print(f"--- rank 0, {args.steps} steps, sorted by {key} (ms per step) ---")
                stats = pstats.Stats(profile)
                rows = sorted(
                    stats.stats.items(), key=lambda kv: kv[1][3 if key == "cumulative" else 2]
                )[::-1][: args.top]
                for (path, line, func), (_, calls, own, cum, _) in rows:
                    where = f"{os.path.basename(path)}:{line}({func})"
                    print(
                        f"{cum * 1e3 / args.steps:8.2f} {own * 1e3 / args.steps:8.2f} "
                        f"{calls / args.steps:7.1f}  {where}"
                    )


def _count_waits() -> list:
    """Make the communicator's wait loop add the process CPU time it spends (polling for the
    other ranks) to the returned one-element list."""
    from distgrad.distributed import communicator

    total = [0.0]
    wait = communicator._wait

    def counted(*args, **kwargs):
        start = time.process_time()
        try:
            return wait(*args, **kwargs)
        finally:
            total[0] += time.process_time() - start

    communicator._wait = counted
    return total


def run_job(args, modes: str, barrier: bool, profile: bool = False, root=None) -> dict:
    """One 2-rank job of ``modes`` (of the checkout ``root``, default this one): {mode:
    (wall, CPU, CPU less waits) medians}."""
    script = os.path.abspath(__file__)
    if root is not None:
        script = os.path.join(root, "benchmarks", os.path.basename(script))
    command = [
        sys.executable,
        script,
        "--ranks",
        str(args.ranks),
        "--steps",
        str(args.steps),
        "--modes",
        modes,
        "--top",
        str(args.top),
        "--child",
    ]
    command += ["--barrier"] * barrier + ["--profile-child"] * profile
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    results = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            _, name, wall, cpu, work = line.split()
            results[name] = (float(wall), float(cpu), float(work))
        elif profile:
            print(line)
    return results


def report(rounds: list) -> None:
    """Medians over the rounds, and medians of the per-round ratios to DDP."""
    import statistics

    print("mode      wall ms  ratio     CPU ms  ratio   CPU-wait ms  ratio")
    for mode in MODES:
        cells = []
        for k in range(3):
            value = statistics.median(r[mode][k] for r in rounds)
            ratio = statistics.median(r[mode][k] / r["DDP"][k] for r in rounds)
            cells.append(f"{value * 1e3:8.2f} {ratio:6.3f}x")
        print(f"{mode:<8} " + "   ".join(cells))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--method", choices=("jobs", "interleaved"), default="jobs")
    parser.add_argument("--profile", choices=MODES)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--barrier", action="store_true")
    parser.add_argument(
        "--compare",
        help="another checkout (with this script in its benchmarks/): each round also runs its "
        "jobs, paired with this one's (before/after)",
    )
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--profile-child", dest="profile_child", action="store_true")
    args = parser.parse_args()
    if args.child:
        if not any(
            v in os.environ for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "DISTGRAD_BENCH_CHILD")
        ):
            sys.exit(spawn_mpi(args.ranks))
        args.profile = args.profile_child
        child(args)
        return
    load = os.getloadavg()[0]
    header = (
        f"MLP {'-'.join(map(str, MLP_SIZES))}, float32, per-rank batch {BATCH}, {args.ranks} "
        f"ranks, 1 thread per rank, {args.steps} steps"
    )
    if args.profile:
        run_job(args, args.profile, barrier=False, profile=True)
        return
    if args.method == "interleaved":
        rounds = [run_job(args, ",".join(MODES), barrier=True)]
        print(f"{header}, interleaved in one job, barrier before each step")
        report(rounds)
    else:
        checkouts = [None] + ([os.path.abspath(args.compare)] if args.compare else [])
        rounds = {c: [] for c in checkouts}
        for r in range(args.rounds):
            for c in checkouts if r % 2 == 0 else checkouts[::-1]:
                result = {}
                for mode in MODES[r % 3 :] + MODES[: r % 3]:
                    result.update(run_job(args, mode, barrier=False, root=c))
                rounds[c].append(result)
                print(
                    f"round {r + 1}{'' if c is None else ' ' + c}: "
                    + ", ".join(
                        f"{m} {result[m][0] * 1e3:.1f} ({result[m][1] * 1e3:.1f}, "
                        f"{result[m][2] * 1e3:.1f}) ms"
                        for m in MODES
                    ),
                    flush=True,
                )
        print(f"{header}, one job per mode, {args.rounds} rounds alternating, no barrier")
        for c in checkouts:
            if args.compare:
                print("this checkout:" if c is None else f"{c}:")
            report(rounds[c])
    print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
