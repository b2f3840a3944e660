"""The timeline (``distgrad.distributed.timeline``): a 2-rank DataParallel run writes one
Chrome trace per rank, merged into one file whose bucket launches lie inside backward; the PNG
renders (skipped without matplotlib)."""

import json
import struct

import pytest

from distgrad.distributed import timeline
from tests.distributed.mpi_helpers import check, run_mpi


def _events(path):
    return json.loads(path.read_text())["traceEvents"]


def _check_trace(directory, steps, buckets):
    merged = directory / "timeline.json"
    events = _events(merged)
    assert {e["pid"] for e in events} == {0, 1}
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names[(0, 0)] == "compute" and names[(1, 1)] == "comm"
    for rank in (0, 1):
        mine = [e for e in events if e["pid"] == rank and "ts" in e]
        backward = sorted((e["ts"], e["ts"] + e["dur"]) for e in mine if e["name"] == "backward")
        forward = [e for e in mine if e["name"] == "forward"]
        launches = [e for e in mine if e["name"].endswith(" launch")]
        comm = [e for e in mine if e["tid"] == timeline.STREAMS["comm"]]
        steps_ = [e for e in mine if e["name"] == "SGD.step"]
        assert len(backward) == len(forward) == len(steps_) == steps, (rank, len(backward))
        assert len(launches) == len(comm) == steps * buckets, (rank, len(launches))
        for launch in launches:  # every bucket's launch lies inside a backward
            assert any(a <= launch["ts"] <= b for a, b in backward), (launch, backward)
        for span in comm:
            assert span["dur"] >= 0 and span["args"]["bytes"] > 0
        # each step: forward, then backward, then the optimizer step
        fwd = sorted(e["ts"] for e in forward)
        opt = sorted(e["ts"] for e in steps_)
        for (b0, b1), f, o in zip(backward, fwd, opt):
            assert f <= b0 <= b1 <= o
    # the per-rank files are there too, and the merged one is on one clock starting at 0
    assert sorted(p.name for p in directory.glob("rank*.trace.json")) == [
        "rank0.trace.json",
        "rank1.trace.json",
    ]
    assert min(e["ts"] for e in events if "ts" in e) == 0
    return merged


@pytest.mark.parametrize("mode", ["env", "api"])
def test_two_rank_timeline(tmp_path, mode):
    env = {"DISTGRAD_TIMELINE": str(tmp_path)} if mode == "env" else None
    out = check(run_mpi(2, "dp_timeline.py", mode, str(tmp_path), env=env, timeout=120)).stdout
    buckets = {int(line.split()[2]) for line in out.splitlines() if line.startswith("OK")}
    assert len(buckets) == 1 and out.count("OK") == 2, out
    _check_trace(tmp_path, 3, buckets.pop())
    png = tmp_path / "overlap.png"
    pytest.importorskip("matplotlib")
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert 200 < width < 2000 and 50 < height < 2000
