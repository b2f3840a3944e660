"""Training step of a small CNN on 28x28 inputs, batch 64, float32:

    conv(1->16, 3x3, pad 1) - relu - maxpool 2 - conv(16->32, 3x3, pad 1) - relu - maxpool 2
    - linear(32*7*7 -> 10) - softmax cross-entropy, then an SGD update

distgrad (``distgrad.nn.functional`` ops) against a hand-written numpy im2col forward/backward
of the same network with the same weights, timed interleaved in the same process after checking
that both give the same loss and gradients.

    python benchmarks/bench_cnn.py              # 1 and 2 threads
    python benchmarks/bench_cnn.py --quick      # fewer repetitions

Each thread count runs in a child process with OMP/OPENBLAS/MKL_NUM_THREADS set before numpy
is imported. Prints medians, p10 and p90 (ms) and the distgrad/numpy ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BATCH, LR = 64, 0.01
SHAPES = {
    "w1": (16, 1, 3, 3),
    "b1": (16,),
    "w2": (32, 16, 3, 3),
    "b2": (32,),
    "w3": (10, 32 * 7 * 7),
    "b3": (10,),
}


# ---- the numpy reference ------------------------------------------------------------------
def np_conv_forward(x, w, b):
    """3x3 convolution, padding 1, by im2col: columns (C*9, N*H*W) and one GEMM."""
    import numpy as np
    from numpy.lib.stride_tricks import as_strided

    n, c, h, wd = x.shape
    f = w.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    s = xp.strides
    view = as_strided(xp, (c, 3, 3, n, h, wd), (s[1], s[2], s[3], s[0], s[2], s[3]))
    cols = np.ascontiguousarray(view).reshape(c * 9, -1)
    out = (w.reshape(f, -1) @ cols).reshape(f, n, h, wd).transpose(1, 0, 2, 3)
    out = np.ascontiguousarray(out)
    out += b[:, None, None]
    return out, cols


def np_conv_backward(dout, x_shape, w, cols, need_dx):
    """Gradients of the convolution: dW by one GEMM with the columns, dx by col2im as nine
    strided additions."""
    import numpy as np

    n, c, h, wd = x_shape
    f = w.shape[0]
    db = dout.sum(axis=(0, 2, 3))
    dout_r = dout.transpose(1, 0, 2, 3).reshape(f, -1)
    dw = (dout_r @ cols.T).reshape(w.shape)
    if not need_dx:
        return None, dw, db
    dcols = (w.reshape(f, -1).T @ dout_r).reshape(c, 3, 3, n, h, wd)
    dxp = np.zeros((n, c, h + 2, wd + 2), dtype=dout.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i : i + h, j : j + wd] += dcols[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, 1:-1, 1:-1], dw, db


def np_pool_forward(x):
    """2x2 max pooling, stride 2, as the max of the four strided sub-grids."""
    import numpy as np

    return np.maximum(
        np.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
        np.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]),
    )


def np_pool_backward(dout, x, out):
    import numpy as np

    dx = np.empty_like(x)
    for i in range(2):
        for j in range(2):
            dx[:, :, i::2, j::2] = (x[:, :, i::2, j::2] == out) * dout
    return dx


def numpy_step(p, x, y):
    """Forward, loss, backward and SGD update of the CNN, by hand. Returns (loss, grads)."""
    import numpy as np

    n = x.shape[0]
    z1, cols1 = np_conv_forward(x, p["w1"], p["b1"])
    a1 = np.maximum(z1, 0)
    m1 = np_pool_forward(a1)
    z2, cols2 = np_conv_forward(m1, p["w2"], p["b2"])
    a2 = np.maximum(z2, 0)
    m2 = np_pool_forward(a2)
    flat = m2.reshape(n, -1)
    logits = flat @ p["w3"].T + p["b3"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    loss = float(np.log(sums[:, 0]).sum() - shifted[np.arange(n), y].sum()) / n
    g = exp / sums
    g[np.arange(n), y] -= 1
    g /= n
    grads = {"w3": g.T @ flat, "b3": g.sum(0)}
    gm2 = (g @ p["w3"]).reshape(m2.shape)
    gz2 = np_pool_backward(gm2, a2, m2) * (z2 > 0)
    gm1, grads["w2"], grads["b2"] = np_conv_backward(gz2, m1.shape, p["w2"], cols2, True)
    gz1 = np_pool_backward(gm1, a1, m1) * (z1 > 0)
    _, grads["w1"], grads["b1"] = np_conv_backward(gz1, x.shape, p["w1"], cols1, False)
    for k, gk in grads.items():
        p[k] -= LR * gk
    return loss, grads


# ---- distgrad -------------------------------------------------------------------------------
def distgrad_step(p, x, y):
    """The same step with distgrad ops; ``p`` holds leaf tensors. Returns (loss, grads)."""
    import distgrad as dg
    import distgrad.nn.functional as F

    h = F.max_pool2d(F.relu(F.conv2d(x, p["w1"], p["b1"], padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["w2"], p["b2"], padding=1)), 2)
    loss = F.cross_entropy(F.linear(h.reshape(x.shape[0], -1), p["w3"], p["b3"]), y)
    loss.backward()
    grads = {}
    with dg.no_grad():
        for k, t in p.items():
            grads[k] = t.grad
            t -= LR * t.grad
            t.grad = None
    return loss.item(), grads


# ---- driver -----------------------------------------------------------------------------------
def _stats(times):
    import numpy as np

    ms = np.asarray(times) * 1e3
    return {
        "median": float(np.median(ms)),
        "p10": float(np.percentile(ms, 10)),
        "p90": float(np.percentile(ms, 90)),
    }


def run_child(repeats, warmup):
    import numpy as np

    import distgrad as dg

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    ref = {
        k: (rng.standard_normal(s) * (0.1 if k[0] == "w" else 0.01)).astype(np.float32)
        for k, s in SHAPES.items()
    }
    params = {k: dg.tensor(v.copy(), requires_grad=True) for k, v in ref.items()}
    xt, yt = dg.tensor(x), dg.tensor(y)

    # same loss and gradients first (one step each from the same weights)
    loss_np, grads_np = numpy_step(ref, x, y)
    loss_dg, grads_dg = distgrad_step(params, xt, yt)
    assert abs(loss_np - loss_dg) <= 1e-5 * max(1.0, abs(loss_np)), (loss_np, loss_dg)
    for k, g in grads_np.items():
        np.testing.assert_allclose(
            grads_dg[k].numpy(), g, rtol=2e-3, atol=2e-5, err_msg=f"gradient of {k}"
        )

    times = {"numpy": [], "distgrad": []}
    for i in range(warmup + repeats):
        for name in ("numpy", "distgrad") if i % 2 else ("distgrad", "numpy"):
            t0 = time.perf_counter()
            if name == "numpy":
                numpy_step(ref, x, y)
            else:
                distgrad_step(params, xt, yt)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: _stats(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 repetitions")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = 20 if args.quick else args.repeats
    if args.child:
        print(json.dumps(run_child(repeats, args.warmup)))
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(
        f"CNN training step, batch {BATCH}, 28x28, float32 "
        f"({repeats} steps each, interleaved; times in ms; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"{'threads':>7} {'impl':>9} {'median':>8} {'p10':>8} {'p90':>8} {'ratio':>7}")
    for n in args.threads:
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(n),
            OPENBLAS_NUM_THREADS=str(n),
            MKL_NUM_THREADS=str(n),
            PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--repeats",
            str(repeats),
            "--warmup",
            str(args.warmup),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"child with {n} thread(s) failed:\n{out.stderr}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = res["distgrad"]["median"] / res["numpy"]["median"]
        for name in ("numpy", "distgrad"):
            s = res[name]
            tail = f"{ratio:>7.2f}" if name == "distgrad" else ""
            print(f"{n:>7} {name:>9} {s['median']:>8.2f} {s['p10']:>8.2f} {s['p90']:>8.2f} {tail}")


if __name__ == "__main__":
    main()
