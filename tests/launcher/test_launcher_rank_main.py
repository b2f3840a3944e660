"""The per-rank wrapper run directly (no launcher variables: rank 0 of 1, no MPI)."""

import subprocess
import sys

import pytest

from launcher.plan import RANK_MAIN
from launcher_testing import ROOT, launcher_env


def rank_main(tmp_path, code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "prog.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, RANK_MAIN, str(script), *args],
        cwd=ROOT, env=launcher_env(**env), capture_output=True, text=True, timeout=30, check=False,
    )


def test_sets_environment_before_the_program_runs(tmp_path):
    code = (
        "import os, sys\n"
        "print(sys.argv[1:], os.environ['DISTGRAD_LOCAL_RANK'], os.environ['DISTGRAD_LOCAL_SIZE'],"
        " os.environ['CUDA_VISIBLE_DEVICES'], __name__, sys.path[0] == os.path.dirname(__file__))\n"
    )
    result = rank_main(tmp_path, code, "a", "--b", CUDA_VISIBLE_DEVICES="3,4",
                       PMI_RANK="1", PMI_SIZE="2", MPI_LOCALRANKID="1", MPI_LOCALNRANKS="2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['a', '--b'] 1 2 4 __main__ True\n"


def test_uncaught_exception_prints_tagged_traceback(tmp_path):
    result = rank_main(tmp_path, "def f():\n    raise ValueError('bad value')\nf()\n")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "[rank 0] Traceback (most recent call last):"
    assert lines[-1] == "[rank 0] ValueError: bad value"
    assert all(line.startswith("[rank 0] ") for line in lines)
    assert "runpy" not in result.stderr and "rank_main" not in result.stderr


@pytest.mark.parametrize("code, status, stderr", [
    ("import sys; sys.exit(4)", 4, ""),
    ("import sys; sys.exit('giving up')", 1, "[rank 0] giving up\n"),
    ("import sys; sys.exit(0)", 0, ""),
])
def test_exit_status_passes_through(tmp_path, code, status, stderr):
    result = rank_main(tmp_path, code)
    assert (result.returncode, result.stderr) == (status, stderr)


def test_usage_without_program():
    result = subprocess.run([sys.executable, RANK_MAIN], cwd=ROOT,
                            env=launcher_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("usage: python rank_main.py (SCRIPT | -c CODE)")
