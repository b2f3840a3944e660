"""Loading a ``distgrad.checkpoint`` file the way the store does: before (verify the manifest's
SHA-256, then decode a copy of the bytes that checks the file's own checksum again) against
after (verify once, decode the verified buffer in place). 100 MiB model (25 Linear(1024,
1024), float32), 7 interleaved repetitions, medians."""

import io
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import distgrad as dg  # noqa: E402
from distgrad import checkpoint, serialization  # noqa: E402
from distgrad.checkpoint import store  # noqa: E402

model = dg.nn.Sequential(*[dg.nn.Linear(1024, 1024) for _ in range(25)])
root = tempfile.mkdtemp(prefix="bench-store-")
checkpoint.save(root, model=model, step=1)
path = store.latest(root)


def run(before: bool) -> float:
    t = time.perf_counter()
    _, blobs = store.verify(path)
    for name, blob in blobs.items():
        if before:
            f = io.BytesIO(blob)
            f.name = name
            serialization.load(f)
        else:
            serialization._load(blob, None, False, False, name)
    return time.perf_counter() - t


a, b = [], []
for _ in range(7):
    a.append(run(True))
    b.append(run(False))
print(f"before (hashed twice, decoded from a copy): {statistics.median(a) * 1e3:.1f} ms")
print(f"after (hashed once, decoded in place): {statistics.median(b) * 1e3:.1f} ms")
print(f"ratio after/before: {statistics.median(b) / statistics.median(a):.3f}")
