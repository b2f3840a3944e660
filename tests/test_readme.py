"""The README's Python snippets run as written: the first in one process, the second (the
data-parallel one) on 2 real MPI ranks."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.mpi_helpers import rank_env, requires_mpi, run_mpi

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.skipif(not README.exists(), reason="README.md is not next to tests/")


def snippets():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_two_snippets():
    assert len(snippets()) == 2


def test_single_process_snippet_trains(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(snippets()[0])
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=rank_env()
    )
    assert proc.returncode == 0, proc.stderr
    loss = float(re.search(r"loss after 100 steps: ([0-9.]+)", proc.stdout).group(1))
    assert loss < 0.1, proc.stdout  # as the comment says: it memorises the batch


@requires_mpi
def test_data_parallel_snippet_runs_on_two_ranks(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(snippets()[1])
    proc = run_mpi(2, script, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"2 ranks, last loss [0-9.]+\n", proc.stdout), proc.stdout
