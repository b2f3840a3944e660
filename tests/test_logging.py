"""The ``distgrad`` logger: level from ``DISTGRAD_LOG_LEVEL``, the rank in each record (also on
real MPI ranks), and no bare ``print``/stderr writes in library code."""

import ast
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import distgrad
from distgrad.backend import logconfig
from tests import mpijob

PACKAGE = Path(distgrad.__file__).parent
FOREIGN = ("DISTGRAD_", "RANK", "PMI_", "OMPI_", "SLURM_")  # levels and ranks of an outer job


def run_python(code, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


@pytest.mark.multiprocess
def test_level_comes_from_the_environment():
    code = """
        import logging, distgrad
        logging.getLogger("distgrad.example").info("hello %d", 1)
        logging.getLogger("distgrad.example").debug("not shown")
    """
    shown = run_python(code, DISTGRAD_LOG_LEVEL="info")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.strip() == "[distgrad] INFO distgrad.example: hello 1"
    quiet = run_python(code)  # default WARNING
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


@pytest.mark.multiprocess
def test_a_bad_level_is_named():
    bad = run_python("import distgrad", DISTGRAD_LOG_LEVEL="loud")
    assert bad.returncode != 0
    assert "DISTGRAD_LOG_LEVEL='loud' is not a logging level" in bad.stderr


@pytest.mark.multiprocess
def test_rank_from_launcher_variables_before_init():
    out = run_python(
        "import logging, distgrad; logging.getLogger('distgrad.x').warning('w')", PMI_RANK="3"
    )
    assert out.stderr.strip() == "[rank 3] WARNING distgrad.x: w", out.stderr


def test_each_record_carries_the_rank(caplog):
    before = logconfig.log_rank()
    try:
        logconfig.set_log_rank(5)
        with caplog.at_level(logging.INFO, logger="distgrad"):
            logging.getLogger("distgrad.some.module").info("message")
        assert [(r.rank, r.rank_prefix) for r in caplog.records] == [(5, "[rank 5] ")]
        other = logging.getLogRecordFactory()("other", logging.INFO, "f", 1, "m", (), None)
        assert not hasattr(other, "rank")  # other libraries' records are left alone
    finally:
        logconfig.set_log_rank(before)


def test_set_log_level_accepts_names_and_numbers():
    logger = logging.getLogger("distgrad")
    before = logger.level
    try:
        logconfig.set_log_level("DEBUG")
        assert logger.level == logging.DEBUG
        logconfig.set_log_level(logging.ERROR)
        assert logger.level == logging.ERROR
        with pytest.raises(ValueError, match="not a logging level"):
            logconfig.set_log_level("chatty")
    finally:
        logger.setLevel(before)


@mpijob.requires_mpi
@pytest.mark.multiprocess
def test_records_on_mpi_ranks_name_their_rank(tmp_path):
    script = tmp_path / "log_ranks.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import distgrad as dg
            import distgrad.distributed as dist
            from distgrad import nn
            dist.init()
            model = nn.Linear(2, 2)
            dg.checkpoint.save({str(tmp_path / "ckpt")!r}, model=model, step=1)
            """
        )
    )
    job = mpijob.run(script, n=2, env={"DISTGRAD_LOG_LEVEL": "INFO"}).check()
    lines = [line for line in job.stderr.splitlines() if "saved checkpoint" in line]
    assert len(lines) == 1 and lines[0].startswith("[rank 0] INFO distgrad.checkpoint"), lines


# Library code that still writes to stdout/stderr directly; the dist and sharding work convert
# distributed/ (uncaught-exception tracebacks and the watchdog's summary go to stderr by design).
DIRECT_OUTPUT_ALLOWED = {"distributed"}


def _direct_output_calls(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "print":
            yield node.lineno, "print"
        elif (
            isinstance(func, ast.Attribute)
            and func.attr == "write"
            and isinstance(func.value, ast.Attribute)
            and func.value.attr in ("stderr", "stdout")
        ):
            yield node.lineno, f"sys.{func.value.attr}.write"


def test_library_code_logs_instead_of_printing():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in DIRECT_OUTPUT_ALLOWED or rel.parts[0] == "launcher":
            continue
        found += [f"{rel}:{line}: {what}" for line, what in _direct_output_calls(path)]
    assert not found, "use logging.getLogger(__name__):\n" + "\n".join(found)


def test_the_scan_finds_a_print(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import sys\nprint('x')\nsys.stderr.write('y')\n")
    assert list(_direct_output_calls(sample)) == [(2, "print"), (3, "sys.stderr.write")]
