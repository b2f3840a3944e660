import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _gpu_available() -> bool:
    try:
        import distgrad

        return distgrad.cuda.is_available()
    except Exception:
        return False


#: Test modules that start processes but do not mark their tests ``multiprocess`` yet (the
#: dist helper is rewriting tests/launcher; once its tests carry the marker, this set goes).
UNMARKED_MULTIPROCESS = {
    "test_launcher_local_runs.py",
    "test_launcher_multinode.py",
    "test_launcher_rank_main.py",
    "test_launcher_slurm.py",
}


#: torch is only a reference for comparisons: its own warnings (deprecations, hints) are not
#: distgrad's and do not fail a test, even where warnings are errors (make unit).
IGNORE_TORCH_WARNINGS = pytest.mark.filterwarnings("ignore:::torch")


def _needs_mpi(item) -> bool:
    from tests import mpijob

    reason = mpijob.requires_mpi.mark.kwargs["reason"]
    return any(m.kwargs.get("reason") == reason for m in item.iter_markers("skipif"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        # a test that needs MPI starts a job: it is multiprocess whether marked so or not
        if item.path.name in UNMARKED_MULTIPROCESS or _needs_mpi(item):
            item.add_marker(pytest.mark.multiprocess)
        item.add_marker(IGNORE_TORCH_WARNINGS)
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU with cupy (none here)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # the marker, not the folder name
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    import distgrad

    distgrad.manual_seed(0)
    yield
