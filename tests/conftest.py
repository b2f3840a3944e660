import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# ---- temporary files ---------------------------------------------------------------------------
# The run gets a private temporary directory (TMPDIR and tempfile.tempdir, so every process the
# tests start uses it too; pytest's tmp_path lives there as well). At the end whatever the
# tests or their processes left in it, besides pytest's own tmp_path tree, fails the run, and
# the directory is removed (kept with DISTGRAD_KEEP_TEST_TMP=1, e.g. to look at a failure).
# tests/test_tempfiles.py checks that a leak fails a run.


THIRD_PARTY_TMP = ("pytest-of-", "torchinductor_")


def pytest_configure(config):
    if os.environ.get("DISTGRAD_TEST_INSTALLED"):  # tests/run_from_wheel.sh: not the source
        import distgrad

        where = os.path.dirname(os.path.abspath(distgrad.__file__))
        if os.path.commonpath([where, ROOT]) == ROOT or "site-packages" not in where:
            raise pytest.UsageError(f"DISTGRAD_TEST_INSTALLED: distgrad comes from {where}")
    base = tempfile.mkdtemp(prefix="distgrad-tests-")
    config._distgrad_tmp = (base, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = base
    tempfile.tempdir = base


def pytest_sessionfinish(session, exitstatus):
    base, old = getattr(session.config, "_distgrad_tmp", (None, None))
    if base is None:
        return
    _remove_multiprocessing_tempdir()
    # pytest's own tmp_path root and torch's compile cache (torch, the test oracle, makes
    # torchinductor_<user> in TMPDIR when its parity tests run) are not distgrad's leftovers.
    left = sorted(name for name in os.listdir(base) if not name.startswith(THIRD_PARTY_TMP))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            # what a left directory holds names its writer (e.g. distgrad-watchdog-<job>/)
            held = [str(p.relative_to(base)) for name in left for p in Path(base, name).rglob("*")]
            reporter.write_line(
                f"FAILED temp-file check: the run left {len(left)} entries in {base}: "
                + ", ".join(left[:20])
                + (f" (holding: {', '.join(held[:20])})" if held else ""),
                red=True,
            )
    if os.environ.get("DISTGRAD_KEEP_TEST_TMP"):
        if reporter:
            reporter.write_line(f"temporary files of this run kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    tempfile.tempdir = None
    if old is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old


def _remove_multiprocessing_tempdir():
    """multiprocessing keeps a pymp-* directory in TMPDIR for this process until it exits; run
    its own clean-up now (once), so that it neither counts as left over nor fails at exit."""
    import multiprocessing.util as mp_util

    for finalizer in list(getattr(mp_util, "_finalizer_registry", {}).values()):
        if getattr(finalizer, "_callback", None) is getattr(mp_util, "_remove_temp_dir", None):
            finalizer()


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
