"""Communication-hook pieces that need no other process: ``distgrad.futures.Future``,
``GradBucket``, the bytes formula, the node grouping of the hierarchical allreduce and the
argument checks of ``PowerSGDState``."""

import numpy as np
import pytest

import distgrad
from distgrad.distributed import GradBucket
from distgrad.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd
from distgrad.distributed.algorithms.ddp_comm_hooks import predicted_step_bytes
from distgrad.distributed.hierarchical import hierarchical_bytes, hierarchical_wanted, node_layout
from distgrad.futures import Future, collect_all, wait_all


def test_future_set_result_then_chain():
    fut = Future()
    assert not fut.done()
    with pytest.raises(RuntimeError, match="not completed"):
        fut.value()
    child = fut.then(lambda f: f.value() * 2)
    grandchild = child.then(lambda f: f.value() + 1)
    seen = []
    fut.add_done_callback(lambda f: seen.append(f.value()))
    fut.set_result(5)
    assert seen == [5] and child.done() and child.value() == 10 and grandchild.wait() == 11
    with pytest.raises(RuntimeError, match="already completed"):
        fut.set_result(6)


def test_future_exception_propagates_through_then():
    fut = Future()
    child = fut.then(lambda f: f.value() + 1)
    fut.set_exception(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        child.wait()
    with pytest.raises(TypeError):
        Future().set_exception("not an exception")


def test_future_wait_without_work_raises_instead_of_hanging():
    with pytest.raises(RuntimeError, match="nothing in this process can complete it"):
        Future().wait()


def test_pending_future_runs_callbacks_only_when_asked():
    state = {"ready": False, "calls": 0}

    def ready():
        state["calls"] += 1
        return state["ready"]

    fut = Future._pending(ready, lambda: state.update(ready=True), lambda: "v")
    ran = []
    child = fut.then(lambda f: ran.append(f.value()) or "w")
    assert not child._poll() and ran == []
    state["ready"] = True
    assert child._poll() and ran == []  # the work finished; no callback ran yet
    assert child.wait() == "w" and ran == ["v"]
    both = collect_all([fut, child])
    assert both.wait() == [fut, child] and wait_all([fut, child]) == ["v", "w"]


def test_grad_bucket_accessors_and_set_buffer():
    flat = np.arange(7.0)
    buffer = distgrad.tensor(flat)
    views = [distgrad.tensor(flat[:4].reshape(2, 2)), distgrad.tensor(flat[4:])]
    params = [distgrad.zeros(2, 2), distgrad.zeros(3)]
    bucket = GradBucket(1, 2, buffer, views, params)
    assert bucket.index() == 1 and bucket.is_last() and bucket.buffer() is buffer
    assert len(bucket.gradients()) == 2 and bucket.parameters()[1] is params[1]
    bucket.set_buffer(distgrad.tensor(np.ones(7)))
    assert buffer.array.sum() == 7
    with pytest.raises(ValueError, match="holds"):
        bucket.set_buffer(distgrad.tensor(np.ones(6)))


def test_predicted_bytes_per_hook():
    buckets = [[(10, 20), (10,)], [(30, 4)]]
    plain = predicted_step_bytes(buckets, 4)
    assert plain["total"] == 2 * 4 * (210 + 2 + 120 + 1)
    assert predicted_step_bytes(buckets, 4, "allreduce")["total"] == 2 * 4 * 330 + 2 * 4 * 3
    assert predicted_step_bytes(buckets, 4, "fp16")["total"] == 2 * 2 * 330 + 2 * 4 * 3
    # PowerSGD, rank 2: (10 x 20) -> P 10x2 + Q 20x2; (30 x 4): 30*4=120 <= (34*2)*2 -> plain
    power = predicted_step_bytes(buckets, 4, "powerSGD", matrix_approximation_rank=2)
    assert power["total"] == 2 * 4 * (10 + 20 + 40) + 2 * 4 * 120 + 2 * 4 * 3
    # batched: bucket 0 (210 elements) as a 15 x 15 matrix, bucket 1 (120) as 11 x 11, rank 2
    batched = predicted_step_bytes(buckets, 4, "batched_powerSGD", matrix_approximation_rank=2)
    assert psgd.batched_side(210, 2) == (15, 2) and psgd.batched_side(3, 8) == (2, 2)
    assert batched["total"] == 2 * 4 * (2 * 15 * 2 + 2 * 11 * 2) + 2 * 4 * 3
    level = hierarchical_bytes(1001, 8, 2)
    assert level == {"intra": 2 * 2 * 501 * 8, "inter": 2 * 501 * 8, "total": 6 * 501 * 8}
    hier = predicted_step_bytes([[(1001,)]], 8, "allreduce", ranks_per_node=2)
    assert (hier["intra"], hier["inter"], hier["flat"]) == (level["intra"], level["inter"], 8)
    with pytest.raises(ValueError, match="hook must be one of"):
        predicted_step_bytes(buckets, 4, "int8")


class _Comm:
    world_size = 6

    def allgather_object(self, obj):
        return ["a", "b", "a", "b", "a", "b"]


def test_node_layout_and_choice(monkeypatch):
    monkeypatch.delenv("DISTGRAD_FAKE_NODES", raising=False)
    monkeypatch.delenv("DISTGRAD_HIERARCHICAL_ALLREDUCE", raising=False)
    assert node_layout(_Comm()) == [[0, 2, 4], [1, 3, 5]]
    assert node_layout(_Comm(), ranks_per_node=2) == [[0, 1], [2, 3], [4, 5]]
    monkeypatch.setenv("DISTGRAD_FAKE_NODES", "3")
    assert node_layout(_Comm()) == [[0, 1], [2, 3], [4, 5]]
    monkeypatch.setenv("DISTGRAD_FAKE_NODES", "4")
    with pytest.raises(ValueError, match="cannot be split"):
        node_layout(_Comm())
    assert hierarchical_wanted([[0, 1], [2, 3]]) and not hierarchical_wanted([[0, 1, 2, 3]])
    assert not hierarchical_wanted([[0], [1]]) and not hierarchical_wanted([[0, 1], [2]])
    assert not hierarchical_wanted([[0, 1], [2, 3]], False)
    monkeypatch.setenv("DISTGRAD_HIERARCHICAL_ALLREDUCE", "0")
    assert not hierarchical_wanted([[0, 1], [2, 3]])
    monkeypatch.setenv("DISTGRAD_HIERARCHICAL_ALLREDUCE", "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        hierarchical_wanted([[0, 1], [2, 3]])


def test_powersgd_state_checks_and_orthogonalization():
    with pytest.raises(ValueError, match="start_powerSGD_iter"):
        psgd.PowerSGDState(None, start_powerSGD_iter=1)
    with pytest.raises(ValueError, match="matrix_approximation_rank"):
        psgd.PowerSGDState(None, matrix_approximation_rank=0)
    state = psgd.PowerSGDState(
        None, start_powerSGD_iter=1, use_error_feedback=False, warm_start=False
    )
    assert state.compression_stats() == (0.0, 0, 0)
    rng = np.random.default_rng(0)
    for eps in (0, 1e-8):
        m = rng.normal(size=(9, 3))
        psgd._orthogonalize(m, eps)
        assert np.allclose(m.T @ m, np.eye(3), atol=1e-7)
    assert psgd.should_compress(100, 100, 1, 2) == (True, 10000, 200)
    assert psgd.should_compress(4, 4, 2, 2)[0] is False
