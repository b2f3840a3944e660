"""A test run leaves no temporary files: the check in tests/conftest.py fails a run that does."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.multiprocess  # starts processes

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]
# The inner runs use the real check: tests/conftest.py's two hooks, imported from it.
CONFTEST = (
    f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
    "from tests.conftest import pytest_configure, pytest_sessionfinish  # noqa: F401\n"
)


def _run(pytester, body):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=body)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")


def test_a_leaked_directory_fails_the_run(pytester):
    result = _run(
        pytester,
        "import tempfile\n\ndef test_leaks():\n    tempfile.mkdtemp(prefix='distgrad-leak-')\n",
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*FAILED temp-file check*distgrad-leak-*"])


def test_files_of_child_processes_are_seen_too(pytester):
    body = (
        "import subprocess, sys\n\n"
        "def test_child_leaks():\n"
        "    code = 'import tempfile; tempfile.mkstemp(prefix=\"child-leak-\")'\n"
        "    subprocess.run([sys.executable, '-c', code], check=True)\n"
    )
    result = _run(pytester, body)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*FAILED temp-file check*child-leak-*"])


def test_a_clean_run_passes_and_removes_its_directory(pytester):
    body = "def test_clean(tmp_path):\n    (tmp_path / 'x').write_text('pytest keeps tmp_path')\n"
    result = _run(pytester, body)
    assert result.ret == 0, result.stdout.str()
    assert "temp-file check" not in result.stdout.str()
