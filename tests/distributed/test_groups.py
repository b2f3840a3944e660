"""Process groups and torch.distributed's API over real MPI jobs of 3 and 4 ranks (the checks
run inside the ranks, see ``ranks/test_groups_ranks.py``)."""

import pytest

from .mpi_helpers import HERE, check, requires_mpi, run_mpi


@requires_mpi
@pytest.mark.parametrize("n", [3, 4])
def test_groups_in_ranks(n):
    proc = run_mpi(
        n,
        HERE / "ranks" / "test_groups_ranks.py",
        "-q",
        "-p",
        "no:cacheprovider",
        python_args=("-m", "pytest", "--with-mpi"),
        timeout=180,
    )
    check(proc)
    assert proc.stdout.count(" passed") == n
