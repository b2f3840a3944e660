"""The per-rank wrapper run directly (no launcher variables: rank 0 of 1, no MPI)."""

import subprocess
import sys

import pytest
from distgrad.launcher.command import RANK_MAIN
from launcher_testing import ROOT, launcher_env


def wrapper(*argv: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, RANK_MAIN, *argv],
        cwd=cwd,
        env=launcher_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def rank_main(tmp_path, code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "prog.py"
    script.write_text(code)
    return wrapper(str(script), *args, **env)


def test_sets_environment_before_the_program_runs(tmp_path):
    code = (
        "import os, sys\n"
        "print(sys.argv[1:], os.environ['DISTGRAD_LOCAL_RANK'], os.environ['DISTGRAD_LOCAL_SIZE'],"
        " os.environ['CUDA_VISIBLE_DEVICES'], __name__, sys.path[0] == os.path.dirname(__file__))\n"
    )
    result = rank_main(
        tmp_path,
        code,
        "a",
        "--b",
        CUDA_VISIBLE_DEVICES="3,4",
        PMI_RANK="1",
        PMI_SIZE="2",
        MPI_LOCALRANKID="1",
        MPI_LOCALNRANKS="2",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['a', '--b'] 1 2 4 __main__ True\n"


def test_runs_a_module_as_python_m_does(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "job.py").write_text(
        "import os, sys\nprint(__name__, sys.argv[1:], os.environ['OMP_NUM_THREADS'])\n"
    )
    result = wrapper("-m", "pkg.job", "x", "-y", cwd=tmp_path, OMP_NUM_THREADS="3")
    assert (result.returncode, result.stdout) == (0, "__main__ ['x', '-y'] 3\n"), result.stderr


def test_exec_runs_another_program_with_the_rank_variables():
    result = wrapper(
        "--exec",
        "sh",
        "-c",
        'echo "$DISTGRAD_LOCAL_RANK/$DISTGRAD_LOCAL_SIZE '
        '$MKL_NUM_THREADS $CUDA_VISIBLE_DEVICES"; exit 5',
        PMI_RANK="3",
        PMI_SIZE="4",
        MPI_LOCALRANKID="1",
        MPI_LOCALNRANKS="2",
        CUDA_VISIBLE_DEVICES="6,7",
        MKL_NUM_THREADS="2",
    )
    assert (result.returncode, result.stdout) == (5, "1/2 2 7\n"), result.stderr


def test_exec_of_a_missing_program():
    result = wrapper("--exec", "no-such-program-here")
    assert result.returncode == 127
    assert result.stderr == (
        "[rank 0] distgrad-run: cannot run 'no-such-program-here': No such file or directory\n"
    )


def test_too_few_gpus_stops_the_rank_before_the_program(tmp_path):
    result = rank_main(
        tmp_path,
        "print('started')",
        DISTGRAD_GPUS_PER_NODE="1",
        PMI_RANK="1",
        PMI_SIZE="2",
        MPI_LOCALRANKID="1",
        MPI_LOCALNRANKS="2",
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("[rank 1] distgrad-run: on ")
    assert (
        ": 2 local ranks but 1 GPU(s) (--gpus-per-node 1), and each rank takes one GPU."
        in result.stderr
    )


def test_uncaught_exception_prints_tagged_traceback(tmp_path):
    result = rank_main(tmp_path, "def f():\n    raise ValueError('bad value')\nf()\n")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "[rank 0] Traceback (most recent call last):"
    assert lines[-1] == "[rank 0] ValueError: bad value"
    assert all(line.startswith("[rank 0] ") for line in lines)
    assert "runpy" not in result.stderr and "rank_main" not in result.stderr


@pytest.mark.parametrize(
    "code, status, stderr",
    [
        ("import sys; sys.exit(4)", 4, ""),
        ("import sys; sys.exit('giving up')", 1, "[rank 0] giving up\n"),
        ("import sys; sys.exit(0)", 0, ""),
    ],
)
def test_exit_status_passes_through(tmp_path, code, status, stderr):
    result = rank_main(tmp_path, code)
    assert (result.returncode, result.stderr) == (status, stderr)


@pytest.mark.parametrize("argv", [[], ["-m"], ["-c"], ["--exec"], ["--help"]])
def test_usage_without_program(argv):
    result = wrapper(*argv)
    assert result.returncode == 1
    assert result.stderr == (
        "usage: python rank_main.py (SCRIPT | -m MODULE | -c CODE | --exec PROGRAM) [ARGS...]\n"
    )
