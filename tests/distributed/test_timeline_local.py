"""The timeline in one process (no MPI job): spans, the optimizer step hook, merging rank files
onto one clock, the chart's optional dependency, and nothing recorded when off."""

import json
import sys

import pytest

import distgrad
from distgrad import nn
from distgrad.distributed import timeline


@pytest.fixture(autouse=True)
def _stopped():
    yield
    if timeline.is_recording():
        timeline.stop(merge_timeout=0)


def test_off_records_nothing_and_costs_a_flag():
    assert not timeline.ENABLED
    assert timeline.span("forward") is timeline.span("backward")  # one shared null context
    with timeline.span("x"):
        pass
    assert timeline.stop() is None


def test_recording_in_a_world_of_one(tmp_path):
    model = nn.Linear(4, 3)
    optimizer = distgrad.optim.SGD(model.parameters(), lr=0.1)
    with timeline.recording(tmp_path):
        with timeline.span("forward", args={"step": 0}):
            loss = model(distgrad.randn(2, 4)).sum()
        loss.backward()
        optimizer.step()
        with pytest.raises(RuntimeError, match="already recording"):
            timeline.start(tmp_path)
    optimizer.step()  # after stop: not recorded, the global hooks are gone
    events = json.loads((tmp_path / "timeline.json").read_text())["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    assert [e["name"] for e in spans] == ["forward", "SGD.step"]
    assert spans[0]["args"] == {"step": 0} and spans[0]["pid"] == 0 and spans[0]["tid"] == 0
    assert spans[0]["ts"] == 0 and spans[1]["ts"] >= spans[0]["dur"]
    assert (tmp_path / "rank0.trace.json").exists()


def _rank_file(directory, rank, offset_us, events):
    document = {
        "traceEvents": [dict(e, pid=rank) for e in events],
        "otherData": {"rank": rank, "offset_us": offset_us, "host": "h"},
    }
    (directory / f"rank{rank}.trace.json").write_text(json.dumps(document))


def test_merge_puts_ranks_on_one_clock(tmp_path):
    span = {"name": "backward", "ph": "X", "tid": 0, "cat": "compute", "dur": 5.0}
    _rank_file(tmp_path, 0, 1000.0, [dict(span, ts=10.0)])
    _rank_file(tmp_path, 1, 1003.0, [dict(span, ts=20.0)])  # 13 us later on the common clock
    merged = json.loads(timeline.merge(tmp_path).read_text())
    times = {e["pid"]: e["ts"] for e in merged["traceEvents"]}
    assert times == {0: 0.0, 1: 13.0}
    assert merged["otherData"]["ranks"] == [0, 1]
    with pytest.raises(FileNotFoundError, match="no rank"):
        timeline.merge(tmp_path / "empty")


def test_chart_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    span = {"name": "backward", "ph": "X", "tid": 0, "cat": "compute", "dur": 5.0, "ts": 0.0}
    _rank_file(tmp_path, 0, 0.0, [span])
    merged = timeline.merge(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises
    assert timeline.draw_overlap(merged, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_chart_renders(tmp_path):
    pytest.importorskip("matplotlib")
    events = [
        {"name": "backward", "ph": "X", "tid": 0, "cat": "compute", "dur": 500.0, "ts": 0.0},
        {"name": "allreduce bucket 0", "ph": "X", "tid": 1, "cat": "comm", "dur": 300, "ts": 100},
    ]
    _rank_file(tmp_path, 0, 0.0, events)
    _rank_file(tmp_path, 1, 0.0, events)
    png = timeline.draw_overlap(timeline.merge(tmp_path), tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert timeline.main([str(tmp_path)]) == 0


def test_gpu_spans_from_cuda_events(tmp_path):
    """The NCCL spans of a GPU backward, from the reducer's CUDA events (fake cupy: each event
    records the next tick, 1 ms apart), placed at backward's start on the host clock."""
    from types import SimpleNamespace

    from distgrad.distributed import nccl as nc
    from tests.distributed.fake_cuda import gpu
    from tests.distributed.test_nccl_logic import make

    comm, _, _ = make()
    events = nc.OverlapTimeline.start(comm, gpu([0.0]))  # t0: tick 0
    events.before_launch()  # tick 1: bucket 0 ready on the compute stream
    events.after_launch()  # tick 2: its reduction done
    events.before_launch()  # tick 3: bucket 1
    events.after_launch()  # tick 4
    bucket = SimpleNamespace(launched_at=5.0, nbytes=64, kind="allreduce")
    reducer = SimpleNamespace(buckets=[bucket, bucket], _t_start=5.0)
    timeline.start(tmp_path)
    timeline._gpu_spans(reducer, events)
    timeline.stop(merge_timeout=0)
    doc = json.loads((tmp_path / "rank0.trace.json").read_text())
    gpu_tid = timeline.STREAMS["gpu comm"]
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == gpu_tid]
    starts = [round(e["ts"] - 5e6, 3) for e in spans]
    ends = [round(e["ts"] + e["dur"] - 5e6, 3) for e in spans]
    tick = ends[0] - starts[0]
    assert tick > 0 and starts == [tick, 3 * tick] and ends == [2 * tick, 4 * tick]
    assert [e["name"] for e in spans] == ["nccl allreduce bucket 0", "nccl allreduce bucket 1"]
