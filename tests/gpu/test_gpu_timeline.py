"""The timeline of a 2-rank DataParallel run on two GPUs: besides the host spans, every
bucket's NCCL reduction of the 3 recorded steps appears on the ``gpu comm`` thread, read from
CUDA events (placed on the host clock at backward's start, so only its order is checked)."""

import json

import pytest

from distgrad.distributed import timeline

from .gpu_helpers import requires_2_gpus, requires_mpi, run_gpu_job

pytestmark = [pytest.mark.gpu, pytest.mark.multiprocess, requires_mpi, requires_2_gpus]


def test_two_gpu_timeline_has_nccl_spans(tmp_path):
    env = {"DISTGRAD_TEST_DEVICE": "cuda"}
    out = run_gpu_job(2, "../../distributed/workers/dp_timeline.py", "api", str(tmp_path), env=env)
    (buckets,) = {int(x.split()[2]) for x in out.stdout.splitlines() if x.startswith("OK")}
    events = json.loads((tmp_path / "timeline.json").read_text())["traceEvents"]
    for rank in (0, 1):
        mine = [e for e in events if e.get("pid") == rank and "ts" in e]
        gpu = [e for e in mine if e["tid"] == timeline.STREAMS["gpu comm"]]
        first_backward = min(e["ts"] for e in mine if e["name"] == "backward")
        assert len(gpu) == 3 * buckets, (rank, len(gpu), buckets)
        for span in gpu:
            assert span["args"]["clock"] == "gpu" and span["dur"] >= 0
            assert span["ts"] >= first_backward, (span, first_backward)
