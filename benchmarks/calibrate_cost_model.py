"""Fit the cost model's ``here`` link (alpha, bandwidth) from allreduces measured on this
machine, and check its predictions of whole steps' communication against measurement.

    python benchmarks/calibrate_cost_model.py            # 2 ranks, then 4, then the joint fit
    python benchmarks/calibrate_cost_model.py --quick    # sizes up to 4 MiB, fewer repetitions

Each world size runs as its own mpiexec job (this script, re-run with ``--child N``) which
times float32 allreduces of 1 KiB to 64 MiB through distgrad's communicator (desync check on,
as in training), prints one JSON line of ``(n, bytes, seconds)`` medians, and then times, for
the MLP benchmark's network, the collectives of one step of each mode as the cost model lists
them (``cost_model.collectives``: DDP's bucket allreduces, ZeRO-1's extra all-gather, ZeRO-2/3's
per-unit all-gathers and reduce-scatters; for fp16/bf16 the halved bytes in float32 buffers),
issued one after the other. The parent fits alpha and bandwidth jointly over 2 and 4 ranks
(``cost_model.fit``) and prints predicted against measured for every mode and world size, with
the fit of this run and with the stored ``here`` preset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODES = ("ddp", "fp16", "zero1", "zero2", "zero3")


def child(quick: bool) -> None:
    """Inside an MPI job: calibrate, time the steps (interleaved), print one JSON line."""
    import distgrad.distributed as dist
    from distgrad.distributed import cost_model

    comm = dist.init()
    sizes = [s for s in cost_model.SWEEP if s <= (4 << 20 if quick else 64 << 20)]
    steps = {f"step:{mode}": cost_model.collectives(mode, "mlp") for mode in MODES}
    links, samples, measured = cost_model.calibrate(
        comm, sizes, repeats=5 if quick else 15, extra=steps
    )
    if comm.rank == 0:
        result = {
            "n": comm.world_size,
            "links": {k: [v.latency_s, v.bandwidth] for k, v in links.items()},
            "samples": samples,
            "steps": {mode: measured[f"step:{mode}"] for mode in MODES},
        }
        print("RESULT " + json.dumps(result), flush=True)


def run_child(n: int, quick: bool) -> tuple:
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [mpiexec, "-n", str(n), sys.executable, __file__, "--child", str(n)]
    out = subprocess.run(
        command + (["--quick"] if quick else []), env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        sys.exit(f"{n}-rank job failed:\n{out.stdout}\n{out.stderr}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.split(" ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", type=int)
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    if args.child:
        child(args.quick)
        return
    from distgrad.distributed import cost_model

    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; MPI allreduce "
        f"float32, sum, medians of the slowest rank"
    )
    for n in args.ranks:
        result = run_child(n, args.quick)
        links = {k: cost_model.Link(*v) for k, v in result["links"].items()}
        fitted = cost_model.calibrated_cluster(links, f"fit-{n}")
        stored = cost_model.PRESETS["here" if n <= (os.cpu_count() or 1) else "here-oversubscribed"]
        print(f"\n{n} ranks: fitted links (alpha per hop, bandwidth)")
        for kind, link in links.items():
            print(f"  {kind:>15}: {link.latency_s * 1e6:8.1f} us  {link.bandwidth / 1e9:6.2f} GB/s")
        print("\n| kind | bytes | measured ms | fitted ms | ratio |")
        print("|---|---:|---:|---:|---:|")
        for kind, samples in result["samples"].items():
            for _, nbytes, seconds in samples:
                predicted = cost_model.reduce_scatter(n, nbytes, links[kind])
                if kind == "allreduce":
                    predicted = cost_model.ring_allreduce(n, nbytes, links[kind])
                print(
                    f"| {kind} | {nbytes} | {seconds * 1e3:.3f} | {predicted * 1e3:.3f} | "
                    f"{predicted / seconds:.2f} |"
                )
        print(
            f"\nMLP 784-1024-1024-10, one step's collectives one after the other, {n} ranks: "
            f"measured against predicted (this run's fit; the stored {stored.name!r} preset)\n"
        )
        print("| mode | measured ms | predicted | ratio | preset predicts | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for mode in MODES:
            measured = result["steps"][mode]
            a = cost_model.step_time(mode, "mlp", n, fitted, "ring")
            b = cost_model.step_time(mode, "mlp", n, stored, "ring")
            print(
                f"| {mode} | {measured * 1e3:.2f} | {a * 1e3:.2f} | {a / measured:.2f} | "
                f"{b * 1e3:.2f} | {b / measured:.2f} |"
            )


if __name__ == "__main__":
    main()
