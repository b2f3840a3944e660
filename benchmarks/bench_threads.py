"""Wall time of the examples with 1, 2, ... BLAS threads (docs/THREADS.md).

    python benchmarks/bench_threads.py [--rounds 3] [--threads 1 2]

Each example runs as a fresh process with OMP/OPENBLAS/MKL_NUM_THREADS set; the thread counts
are interleaved within each round, so load changes hit them alike. Prints every time and the
median per setting.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RUNS = {
    "train_mlp_digits.py --epochs 8": ["train_mlp_digits.py", "--epochs", "8", "--fresh"],
    "train_cnn_digits.py --epochs 2": ["train_cnn_digits.py", "--epochs", "2"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    times = {(name, t): [] for name in RUNS for t in args.threads}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.rounds):
            for name, argv in RUNS.items():
                for t in args.threads:
                    env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
                    env["MKL_NUM_THREADS"] = str(t)
                    command = [sys.executable, str(EXAMPLES / argv[0]), *argv[1:]]
                    start = time.perf_counter()
                    subprocess.run(
                        [*command, "--out", out], env=env, check=True, capture_output=True
                    )
                    times[name, t].append(time.perf_counter() - start)
    print(f"| example | {' | '.join(f'{t} thread(s)' for t in args.threads)} |")
    print("| --- |" + " --- |" * len(args.threads))
    for name in RUNS:
        cells = []
        for t in args.threads:
            runs = times[name, t]
            cells.append(f"{statistics.median(runs):.1f} ({', '.join(f'{x:.1f}' for x in runs)})")
        print(f"| `{name}` | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
