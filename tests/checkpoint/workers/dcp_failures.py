"""A save that fails on one rank (bad state, a write error, the same under async_save) raises
on every rank and leaves the previous checkpoint committed and intact.
``python dcp_failures.py ROOT`` on 2 ranks; prints ``OK <case> rank <r>`` per case."""

import errno
import json
import os
import sys

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.distributed.checkpoint as dcp
from distgrad.checkpoint import store

dist.init()
R = dist.rank()
root = sys.argv[1]
good = {
    "v": distgrad.tensor(np.ones(3)),
    "w": distgrad.tensor(np.arange(6.0)),
    "n": 1,
}  # 1 per rank
first = dcp.save(good, checkpoint_id=root, step=1)
pointer = open(os.path.join(root, "LATEST")).read()


def unchanged(case):
    dist.barrier()
    assert open(os.path.join(root, "LATEST")).read() == pointer, case
    assert not [n for n in os.listdir(root) if n.startswith(".staging-")], os.listdir(root)
    target = {
        "v": distgrad.zeros(3, dtype=distgrad.float64),
        "w": distgrad.zeros(6, dtype=distgrad.float64),
        "n": 0,
    }
    dcp.load(target, checkpoint_id=root)
    assert target["n"] == 1 and np.array_equal(target["w"].numpy(), np.arange(6.0)), case
    print(f"OK {case} rank {R}", flush=True)


bad = dict(good, extra=object() if R == 1 else 0)
try:
    dcp.save(bad, checkpoint_id=root, step=2)
except (TypeError, dcp.CheckpointError) as exc:
    assert ("rank 1" in str(exc)) if R == 0 else isinstance(exc, TypeError), exc
else:
    raise SystemExit("a bad state on rank 1 was saved")
unchanged("bad-state")

real = store.write_file


def failing(staging, fname, *args, **kwargs):
    if R == 1 and fname.endswith(".distcp"):
        raise OSError(errno.ENOSPC, "No space left on device (injected)", fname)
    return real(staging, fname, *args, **kwargs)


store.write_file = failing
try:
    dcp.save(dict(good, n=2), checkpoint_id=root, step=3)
except (OSError, dcp.CheckpointError) as exc:
    assert "No space left" in str(exc), exc
else:
    raise SystemExit("a save that failed on rank 1 succeeded")
unchanged("write-error")

future = dcp.async_save(dict(good, n=3), checkpoint_id=root, step=4)
try:
    future.result(timeout=120)
except (OSError, dcp.CheckpointError) as exc:
    assert "No space left" in str(exc), exc
else:
    raise SystemExit("an async save that failed on rank 1 succeeded")
store.write_file = real
unchanged("async-write-error")
print(json.dumps({"rank": R, "done": True}), flush=True)
