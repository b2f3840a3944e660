"""The cost model's arithmetic (deterministic, no processes): the collective formulas, DDP's
bucket plan, bytes per mode and hook, auto's choice, the fit, the command line."""

import math

import numpy as np
import pytest

from distgrad import nn
from distgrad.distributed import cost_model as cm
from distgrad.distributed.reducer import cut_buckets

LINK = cm.Link(1e-5, 1e9)
MLP_PARAMS = 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10


def test_collective_formulas():
    assert cm.ring_allreduce(4, 1e6, LINK) == pytest.approx(6 * 1e-5 + 1.5 * 1e6 / 1e9)
    assert cm.reduce_scatter(4, 1e6, LINK) == pytest.approx(3 * 1e-5 + 0.75e-3)
    assert cm.all_gather(4, 1e6, LINK) == cm.reduce_scatter(4, 1e6, LINK)
    assert cm.tree_allreduce(1024, 1e6, LINK) == pytest.approx(20 * 1e-5 + 2e-3)
    assert cm.ring_allreduce(1, 1e6, LINK) == cm.reduce_scatter(1, 1e6, LINK) == 0.0
    # on one node, hierarchical = reduce-scatter + all-gather = the ring allreduce
    node = cm.Cluster("x", 8, LINK, cm.Link(1e-3, 1e8))
    assert cm.hierarchical_allreduce(8, 1e6, node) == pytest.approx(cm.ring_allreduce(8, 1e6, LINK))
    # across nodes: 2 x intra-node ring reduce-scatter + inter-node ring over M/g, g rings
    # sharing the node's network bandwidth
    expected = 2 * cm.reduce_scatter(8, 1e6, LINK) + 2 * 3 * 1e-3 + 2 * 3 / 4 * 1e6 / 1e8
    assert cm.hierarchical_allreduce(32, 1e6, node) == pytest.approx(expected)
    # a flat collective across nodes runs at the slowest hop
    assert node.flat_link(32) == cm.Link(1e-3, 1e8) and node.flat_link(8) == LINK


def test_bucket_plan_matches_data_parallel():
    model = nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
    )
    named = [(n, p) for n, p in model.named_parameters()][::-1]
    real = [b.names for b in cut_buckets(named, 25, 1)]
    shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    assert [[n for n, _ in b] for b in cm.buckets(shapes)] == real
    assert cm.model_shapes(model) == shapes == cm.model_shapes("mlp")


def test_bytes_per_mode():
    psi = 4 * MLP_PARAMS
    assert cm.step_bytes("ddp", "mlp") == psi
    flags = 4 * 6  # with a hook: one float32 'used' flag per parameter, allreduced apart
    assert cm.step_bytes("fp16", "mlp") == cm.step_bytes("bf16", "mlp") == psi // 2 + flags
    assert cm.step_bytes("zero1", "mlp") == 2 * psi  # allreduce + all-gather
    assert cm.step_bytes("zero2", "mlp") == 2 * psi  # all-gather + reduce-scatter per unit
    assert cm.step_bytes("zero3", "mlp") == 3 * psi  # all-gathers in forward and backward
    kinds = [k for k, _ in cm.collectives("zero3", "mlp")]
    assert kinds == ["all_gather", "all_gather", "reduce_scatter"] * 3


def test_powersgd_bytes():
    # (m + n) r per compressed matrix; vectors and matrices too small to gain are sent whole
    shapes = [("a.weight", (1000, 500)), ("a.bias", (1000,)), ("b.weight", (4, 4))]
    r = 4
    expected = (1000 + 500) * r + 1000 + 16 + 3  # + the 'used' flags
    assert cm.step_bytes("powersgd", shapes, rank=r) == 4 * expected
    # the rule: compress if (m + n) r * min_compression_rate < m n
    one = [("w", (10, 10))]
    assert cm.step_bytes("powersgd", one, rank=3, min_compression_rate=2) == 4 * (100 + 1)
    assert cm.step_bytes("powersgd", one, rank=3, min_compression_rate=1) == 4 * (60 + 1)
    assert cm.step_bytes("powersgd", one, rank=50, min_compression_rate=0) == 4 * (200 + 1)
    # a conv kernel is dim 0 x the rest
    assert cm.step_bytes("powersgd", [("c", (64, 32, 3, 3))], rank=1) == 4 * (64 + 32 * 9 + 1)
    # three allreduces per bucket (uncompressed, Ps, Qs), then the flags
    assert [k for k, _ in cm.collectives("powersgd", shapes, rank=r)] == ["allreduce"] * 4


def test_step_time_sums_the_collectives():
    cluster = cm.PRESETS["nvlink-ib400"]
    shapes = cm.model_shapes("gpt2")
    for mode in cm.MODES:
        total = 0.0
        for kind, nbytes in cm.collectives(mode, shapes):
            if kind == "allreduce":
                total += cm.allreduce(64, nbytes, cluster, "ring")
            else:
                total += cm.reduce_scatter(64, nbytes, cluster.flat_link(64))
        assert cm.step_time(mode, shapes, 64, cluster, "ring") == pytest.approx(total)
    # auto is never slower than any one algorithm, and fp16 halves the bandwidth term
    for n in (8, 16, 64, 1024):
        auto = cm.step_time("ddp", shapes, n, cluster, "auto")
        assert all(auto <= cm.step_time("ddp", shapes, n, cluster, a) for a in cm.ALGORITHMS)
    big = [("w", (8192, 8192))]
    ratio = cm.step_time("fp16", big, 8, cluster) / cm.step_time("ddp", big, 8, cluster)
    assert 0.5 < ratio < 0.53  # the latency terms stay (and the flags allreduce)


def test_auto_choice():
    cluster = cm.PRESETS["nvlink-ib400"]
    assert cm.auto_algorithm(8, 100e6, cluster) == "ring"  # one node: the ring's bandwidth
    assert cm.auto_algorithm(16, 100e6, cluster) == "hierarchical"  # two nodes, large message
    assert cm.auto_algorithm(1024, 1e4, cluster) == "tree"  # many nodes, latency-bound
    with pytest.raises(ValueError, match="unknown algorithm 'butterfly'"):
        cm.allreduce(8, 1e6, cluster, "butterfly")
    with pytest.raises(ValueError, match="unknown mode 'zero4'"):
        cm.step_time("zero4", "mlp", 8)
    with pytest.raises(ValueError, match="unknown model 'bert'"):
        cm.step_time("ddp", "bert", 8)


def test_fit_recovers_alpha_and_bandwidth():
    samples = [(n, b, cm.ring_allreduce(n, b, LINK)) for n in (2, 4) for b in (1e3, 1e5, 1e7)]
    link = cm.fit(samples)
    assert link.latency_s == pytest.approx(1e-5) and link.bandwidth == pytest.approx(1e9)
    samples = [(4, b, cm.reduce_scatter(4, b, LINK)) for b in (1e3, 1e5, 1e7)]
    assert cm.fit(samples, "reduce_scatter").bandwidth == pytest.approx(1e9)
    # a calibrated cluster runs each kind at its own link
    rs = cm.Link(2e-5, 5e8)
    cluster = cm.calibrated_cluster({"allreduce": LINK, "reduce_scatter": rs, "all_gather": rs})
    assert cm.step_time("zero2", [("w", (1000,))], 4, cluster) == pytest.approx(
        2 * cm.reduce_scatter(4, 4000, rs)
    )


def test_command_line(capsys):
    assert cm.main(["--model", "gpt2", "--cluster", "nvlink-ib200", "--gpus", "8", "1024"]) == 0
    out = capsys.readouterr().out
    assert "124.44 M parameters" in out and "| 1024 GPUs |" in out and "auto picks" in out
    rows = [line for line in out.splitlines() if line.startswith("| ddp |")]
    values = [float(v) for v in rows[0].strip("|").split("|")[2:]]
    assert len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values)
    assert np.all(np.diff(values) > 0)  # more GPUs, more time per step
