"""SIGKILL during ``async_save``, ``python async_kill.py DIR REPEATS SEED``: for each repeat a
forked child trains and saves with ``async_save`` in a loop (recording each step's parameters
before its save starts, the genuine content to compare with); the parent SIGKILLs it at a
random moment after its first commit, then loads the checkpoint and checks it is that step's
genuine content. Prints ``OK <repeat> step <loaded> of <last started>`` per repeat."""

import os
import random
import signal
import sys
import time

import numpy as np

import distgrad
import distgrad.distributed.checkpoint as dcp

top, repeats, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
distgrad.set_default_dtype(distgrad.float64)


def child(root: str, ready: int) -> None:
    distgrad.manual_seed(0)
    weight = distgrad.randn(256, 512)
    step = 0
    while True:
        step += 1
        weight.array[...] = weight.array * 0.999 + 0.001  # a training step
        np.save(os.path.join(os.path.dirname(root), f"params-{step}.npy"), weight.numpy())
        future = dcp.async_save({"w": weight, "step": step}, checkpoint_id=root, step=step)
        if step == 1:
            future.result()
            os.write(ready, b"1")


rng = random.Random(seed)
for attempt in range(repeats):
    root = os.path.join(top, f"run{attempt}", "root")
    os.makedirs(os.path.dirname(root))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            child(root, w)
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    time.sleep(rng.uniform(0.0, 0.25))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    started = max(
        int(n[7:-4]) for n in os.listdir(os.path.dirname(root)) if n.startswith("params-")
    )
    target = {"w": distgrad.zeros(256, 512), "step": 0}
    dcp.load(target, checkpoint_id=root)
    genuine = np.load(os.path.join(os.path.dirname(root), f"params-{target['step']}.npy"))
    assert np.array_equal(target["w"].numpy(), genuine), attempt
    print(f"OK {attempt} step {target['step']} of {started}", flush=True)
