"""Side-by-side suite against torch (issue 12's table), interleaved blocks in one process.

    python benchmarks/bench_vs_torch.py                      # every row
    python benchmarks/bench_vs_torch.py --rows lenet,resnet  # some rows
    python benchmarks/bench_vs_torch.py --quick              # fewer blocks

Rows (``--rows``, comma-separated):

  mlp         training step of the MLP 784-1024-1024-10, batch 128
  lm          training step of a causal transformer LM (2 layers, d256, b16, s128)
  lenet       training step of LeNet-5, batch 64 (1x28x28)
  cnn         training step of bench_cnn.py's CNN (conv 16 and 32 ch, 3x3), batch 64 (not in
              the issue's table: more convolution per sample than LeNet-5)
  resnet      training step of a small ResNet (basic blocks, 32 ch, 32x32, batch 32)
  tinyop      one recorded op forward on 4x4 (add, mul, relu, sum, matmul)
  chain       101-op chain forward + backward on (4,) (50 x (mul, tanh) + sum)
  replay      jit.trace_step replay vs eager step (distgrad vs distgrad): tiny chain,
              LeNet, ResNet, LM
  checkpoint  distgrad.save / load of 100 MiB against torch.save + fsync / torch.load (and
              both loads with mmap=True)

Each model row builds the same code (``benchmarks/models.py``) for both frameworks from the
same weights and checks that both give the same loss (two steps) before timing. A training
step is ``zero_grad(); cross_entropy(model(x), y).backward(); SGD(momentum 0.9).step()``,
float32. Threads default to 1 (OMP/OPENBLAS/MKL_NUM_THREADS, set before numpy loads; export
them to measure more). Without torch the torch columns are skipped; the replay row needs no
torch. Each row prints median, min-max over blocks and the ratio of medians (distgrad/torch,
or replay/eager: below 1 is faster).
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import shutil
import sys
import tempfile
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import models  # noqa: E402
import sidebyside  # noqa: E402
from sidebyside import compare, report, torch_or_none  # noqa: E402

import distgrad as dg  # noqa: E402

ROWS = ("mlp", "lm", "lenet", "cnn", "resnet", "tinyop", "chain", "replay", "checkpoint")
LR, MOMENTUM = 0.01, 0.9


def _data(name: str, rng):
    """(inputs, targets) as numpy arrays for one model."""
    if name == "mlp":
        return rng.standard_normal((128, 784), np.float32), rng.integers(0, 10, 128)
    if name in ("lenet", "cnn"):
        b = models.LENET_BATCH
        return rng.standard_normal((b, 1, 28, 28), np.float32), rng.integers(0, 10, b)
    if name == "resnet":
        r = models.RESNET
        x = rng.standard_normal((r["batch"], 3, r["size"], r["size"]), np.float32)
        return x, rng.integers(0, r["classes"], r["batch"])
    if name == "lm":
        c = models.LM
        idx = rng.integers(0, c["vocab"], (c["batch"], c["seq"]))
        return idx, rng.integers(0, c["vocab"], c["batch"] * c["seq"])
    raise KeyError(name)


BUILDERS = {
    "mlp": models.mlp,
    "lm": models.transformer_lm,
    "lenet": models.lenet,
    "cnn": models.small_cnn,
    "resnet": models.resnet,
}
TITLES = {
    "mlp": "MLP 784-1024-1024-10 step, b128",
    "lm": "transformer LM step (2 layers, d256, b16, s128)",
    "lenet": "LeNet-5 step, b64",
    "cnn": "small CNN step (conv 16, 32 ch 3x3), b64",
    "resnet": "ResNet basic blocks step (32 ch, 32x32, b32)",
}


def training_step(ns, model, x, y):
    """A closure running one SGD training step of ``model`` on ``(x, y)``; returns the loss."""
    F = ns.nn.functional
    opt = ns.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _agree(name, a, b, rtol=2e-4):
    a, b = float(a), float(b)
    if abs(a - b) > rtol * max(1.0, abs(a)):
        raise AssertionError(f"{name}: the two sides disagree before timing: {a} vs {b}")


def model_rows(names, torch, blocks):
    rows = []
    rng = np.random.default_rng(0)
    for name in names:
        x, y = _data(name, rng)
        dg.manual_seed(0)
        dg_model = BUILDERS[name](dg)
        sides = {"distgrad": training_step(dg, dg_model, dg.from_numpy(x), dg.from_numpy(y))}
        if torch is not None:
            t_model = BUILDERS[name](torch)
            models.copy_weights(dg_model, t_model)
            t_step = training_step(torch, t_model, torch.from_numpy(x), torch.from_numpy(y))
            for _ in range(2):
                _agree(name, sides["distgrad"]().item(), t_step().item())
            sides["torch"] = t_step
        rows.append(compare(TITLES[name], sides, blocks=blocks, min_block_s=0.2))
    return rows


def tinyop_rows(torch, blocks):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 4, 4), np.float32)
    rows = []
    frameworks = {"distgrad": dg, "torch": torch}
    ops = {
        "add": lambda p, q: p + q,
        "mul": lambda p, q: p * q,
        "relu": lambda p, q: p.relu(),
        "sum": lambda p, q: p.sum(),
        "matmul 4x4": lambda p, q: p @ q,
    }
    for op_name, op in ops.items():
        sides = {}
        for side, ns in frameworks.items():
            if ns is None:
                continue
            p = ns.from_numpy(a.copy()).requires_grad_()
            q = ns.from_numpy(b.copy()).requires_grad_()
            sides[side] = lambda op=op, p=p, q=q: op(p, q)
        rows.append(compare(f"tiny op forward, recorded: {op_name}", sides, blocks=blocks))
    return rows


def chain_rows(torch, blocks):
    x0 = np.linspace(-1, 1, 4, dtype=np.float32)
    sides = {}
    for side, ns in {"distgrad": dg, "torch": torch}.items():
        if ns is None:
            continue
        x = ns.from_numpy(x0.copy()).requires_grad_()
        w = ns.full((4,), 0.9).requires_grad_()

        def run(x=x, w=w):
            y = x
            for _ in range(50):
                y = (y * w).tanh()
            y.sum().backward()
            x.grad = w.grad = None

        sides[side] = run
    return [compare("101-op chain forward + backward on (4,)", sides, blocks=blocks)]


def replay_rows(blocks):
    """Eager step against the same step traced with ``jit.trace_step`` (distgrad only)."""
    from distgrad import jit

    F = dg.nn.functional
    rng = np.random.default_rng(2)
    cases = [("tiny chain (100 ops on (4,)) step", lambda ns: models.chain(ns), None)]
    cases += [(TITLES[n], BUILDERS[n], n) for n in ("lenet", "resnet", "lm")]
    rows = []
    for title, build, data_name in cases:
        if data_name is None:
            x, y = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4)
            x, y = dg.from_numpy(x), dg.from_numpy(y.astype(np.float32))
            loss_fn = F.mse_loss
        else:
            xn, yn = _data(data_name, rng)
            x, y = dg.from_numpy(xn), dg.from_numpy(yn)
            loss_fn = F.cross_entropy
        dg.manual_seed(0)
        model = build(dg)
        twin = copy.deepcopy(model)
        opt = dg.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        twin_opt = dg.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM)

        def eager(model=model, opt=opt, loss_fn=loss_fn, x=x, y=y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss.detach()

        traced = jit.trace_step(lambda a, b, twin=twin, f=loss_fn: f(twin(a), b), (x, y), twin_opt)
        for _ in range(2):
            _agree(title, eager().item(), traced(x, y).item(), rtol=1e-5)
        sides = {"eager": eager, "replay": (lambda traced=traced, x=x, y=y: traced(x, y))}
        rows.append(
            compare(f"replay: {title}", sides, blocks=blocks, reference="eager", min_block_s=0.2)
        )
    return rows


def wall(*args, **kwargs):
    """``compare`` by wall time whatever ``--cpu-time`` says."""
    return sidebyside.compare(*args, clock=time.perf_counter, **kwargs)


def checkpoint_rows(torch, blocks):
    """100 MiB in 25 float32 tensors of 1 Mi elements; save to a path (torch: + fsync) and
    load back, the same data on both sides."""
    rng = np.random.default_rng(3)
    arrays = {f"layer{i}.weight": rng.standard_normal(1 << 20, np.float32) for i in range(25)}
    tmp = tempfile.mkdtemp(prefix="distgrad-bench-ckpt-")
    try:
        dg_obj = {k: dg.from_numpy(v) for k, v in arrays.items()}
        dg_path = os.path.join(tmp, "distgrad.safetensors")
        save, load = {"distgrad": lambda: dg.save(dg_obj, dg_path)}, {}
        load["distgrad"] = lambda: dg.load(dg_path)
        mapped = {"distgrad": lambda: dg.load(dg_path, mmap=True)}
        if torch is not None:
            t_obj = {k: torch.from_numpy(v) for k, v in arrays.items()}
            t_path = os.path.join(tmp, "torch.pt")

            def t_save():
                with open(t_path, "wb") as f:
                    torch.save(t_obj, f)
                    f.flush()
                    os.fsync(f.fileno())

            save["torch"] = t_save
            load["torch"] = lambda: torch.load(t_path)
            mapped["torch"] = lambda: torch.load(t_path, mmap=True)
        for f in save.values():
            f()
        loaded = load["distgrad"]()
        assert all(np.array_equal(loaded[k].numpy(), v) for k, v in arrays.items())
        if torch is not None:
            loaded = load["torch"]()
            assert all(np.array_equal(loaded[k].numpy(), v) for k, v in arrays.items())
        n = max(3, blocks // 2)
        return [
            wall("save 100 MiB (torch: + fsync)", save, blocks=n, per_block=1, warmup=1),
            wall("load 100 MiB", load, blocks=n, per_block=1, warmup=1),
            wall("load 100 MiB, mmap=True", mapped, blocks=n, per_block=1, warmup=1),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated: {ROWS}")
    parser.add_argument("--blocks", type=int, default=15, help="interleaved blocks per row")
    parser.add_argument("--quick", action="store_true", help="5 blocks per row")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time model, op and replay rows by process CPU time (steadier under load); the "
        "checkpoint rows always use wall time (their hashing runs on threads)",
    )
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    blocks = 5 if args.quick else args.blocks
    if args.cpu_time:
        global compare
        compare = functools.partial(compare, clock=time.process_time)
    torch = torch_or_none()
    threads = os.environ["OMP_NUM_THREADS"]
    print(
        f"distgrad {dg.__version__} vs "
        f"{'torch ' + torch.__version__ if torch else 'no torch (torch rows skipped)'}, "
        f"{threads} thread(s), float32, {blocks} interleaved blocks\n",
        flush=True,
    )
    results = []
    models_ = [r for r in rows if r in BUILDERS]
    if models_:
        results += model_rows(models_, torch, blocks)
    if "tinyop" in rows:
        results += tinyop_rows(torch, blocks)
    if "chain" in rows:
        results += chain_rows(torch, blocks)
    if "checkpoint" in rows:
        results += checkpoint_rows(torch, blocks)
    if results:
        report(results, "distgrad vs torch")
    if "replay" in rows:
        print()
        report(replay_rows(blocks), "jit.trace_step replay vs eager (distgrad)")


if __name__ == "__main__":
    main()
