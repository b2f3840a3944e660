"""Fixtures for the launcher tests; helpers are in launcher_testing.py.

The launcher is imported as ``launcher.*`` from the repository root, which works
before and after ``pip install -e .`` (that maps it to ``distgrad.launcher``).
Both the root and this folder go on sys.path, whatever pytest's import mode.
"""

import importlib.util
import sys
import uuid
from pathlib import Path

import pytest

for folder in (Path(__file__).resolve().parents[2], Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from launcher_testing import MPI_MISSING, Training, distgrad_run, training_command  # noqa: E402


@pytest.fixture
def token() -> str:
    """A unique word to put on a job's command line, to find its processes later."""
    return f"dgtok-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def reference_training(tmp_path_factory) -> Training:
    """The training example on 2 ranks of this machine: what multi-node runs must match."""
    if MPI_MISSING:
        pytest.skip(f"no MPI: {MPI_MISSING}")
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("the training example needs scikit-learn: pip install -e '.[examples]'")
    out = tmp_path_factory.mktemp("reference")
    args = ["-np", "2", "--oversubscribe", "--timeout", "120", *training_command(out)]
    result = distgrad_run(args, timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr
    return Training.read(result.stdout, out)
