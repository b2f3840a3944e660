"""Process groups and torch.distributed's API over real MPI jobs of 3 and 4 ranks (the checks
run inside the ranks, see ``workers/groups_in_ranks.py``)."""

from pathlib import Path

import pytest

from tests import mpijob
from tests.mpijob import requires_mpi

WORKERS = Path(__file__).resolve().parent / "workers"


@requires_mpi
@pytest.mark.multiprocess
@pytest.mark.parametrize("n", [3, 4])
def test_groups_in_ranks(n):
    proc = mpijob.run(
        WORKERS / "groups_in_ranks.py",
        "-q",
        "-p",
        "no:cacheprovider",
        n=n,
        python_args=("-m", "pytest", "--with-mpi"),
        timeout=180,
    ).check()
    assert proc.stdout.count(" passed") == n
