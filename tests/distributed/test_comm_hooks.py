"""DDP communication hooks and the hierarchical allreduce over real MPI processes (2 and 4
ranks, oversubscribed). The checks are in ``workers/comm_hooks_checks.py``: the identity hook is
bitwise DDP, fp16/bf16 within their precision of the exact average and no overflow at 6e4,
PowerSGD exact on low-rank gradients with its error-feedback residual, bytes per step as
predicted; hierarchical allreduce on 2 fake nodes x 2 equal to flat with the predicted bytes per
level."""

from pathlib import Path

import pytest

from tests import mpijob

WORKERS = Path(__file__).resolve().parent / "workers"

pytestmark = mpijob.requires_mpi


def _check(job, n, *expected):
    job.check()
    for line in ("OK all", *expected):
        assert job.stdout.count(line) >= n, (line, job.stdout)


@pytest.mark.parametrize("ranks", [2, 4])
def test_hooks(ranks):
    job = mpijob.run(WORKERS / "comm_hooks_checks.py", "hooks", n=ranks, timeout=300)
    _check(
        job,
        ranks,
        "OK identity bitwise",
        "OK fp16 max relative error",
        "OK bf16 max relative error",
        "OK fp16 no overflow",
        "OK bf16 no overflow",
        "OK powerSGD exact",
        "OK powerSGD error feedback",
        "OK batched powerSGD exact",
        "OK errors",
    )


def test_hierarchical_on_two_fake_nodes():
    job = mpijob.run(
        WORKERS / "comm_hooks_checks.py",
        "hier",
        n=4,
        timeout=300,
        env={"DISTGRAD_FAKE_NODES": "2"},
    )
    _check(
        job,
        4,
        "OK hierarchical all_reduce equals flat",
        "OK DDP hierarchical (no hook) equals flat",
        "OK DDP hierarchical (fp16) equals flat",
    )
