"""The README's Python snippets run as written: the first in one process, the second (the
data-parallel one) on 2 real MPI ranks."""

import re
from pathlib import Path

import pytest

from tests import mpijob

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.skipif(not README.exists(), reason="README.md is not next to tests/")


def snippets():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_two_snippets():
    assert len(snippets()) == 2


@pytest.mark.multiprocess
def test_single_process_snippet_trains(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(snippets()[0])
    proc = mpijob.run_python(script, timeout=120).check()
    loss = float(re.search(r"loss after 100 steps: ([0-9.]+)", proc.stdout).group(1))
    assert loss < 0.1, proc.stdout  # as the comment says: it memorises the batch


@mpijob.requires_mpi
@pytest.mark.multiprocess
def test_data_parallel_snippet_runs_on_two_ranks(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(snippets()[1])
    proc = mpijob.run(script, n=2, timeout=120).check()
    assert re.fullmatch(r"2 ranks, last loss [0-9.]+\n", proc.stdout), proc.stdout
