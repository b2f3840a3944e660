"""The compatibility corpus: each real PyTorch program in ``programs/`` runs under distgrad
with only its imports rewritten, and (where torch is installed) its losses fall as torch's do.

Programs whose header says ``# Needs: nn.LSTM ...`` use layers another part of issue 19 adds;
while distgrad lacks one of those names, the program is an expected failure (not strict), so
the test starts passing the moment the layer lands."""

from __future__ import annotations

import pytest

import distgrad as dg
from tests.compat import runner

PROGRAMS = runner.programs()


def _missing(program) -> list[str]:
    missing = []
    for name in program.needs:
        obj = dg
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                missing.append(name)
                break
    return missing


def _case(program):
    missing = _missing(program)
    marks = [pytest.mark.slow]
    if missing:
        marks.append(
            pytest.mark.xfail(
                reason=f"needs {', '.join(missing)} (issue 19, layers part)", strict=False
            )
        )
    return pytest.param(program, id=program.name, marks=marks)


def test_corpus_has_forty_programs_with_sources():
    assert len(PROGRAMS) >= 40
    for p in PROGRAMS:
        assert p.origin != "?", f"{p.name} does not name its source"


@pytest.mark.parametrize("program", [_case(p) for p in PROGRAMS])
def test_program_runs_like_torch(program):
    row = runner.check(program)
    if row.runs_torch is False:
        pytest.skip(f"{program.name} fails under torch too")
    assert row.runs, f"{program.name} ({program.origin}): {row.failure}"


def test_rewrite_imports_touches_only_imports():
    src = (
        "import torch\nimport torch.nn as nn\nfrom torch import optim\n"
        "from torch.utils.data import DataLoader\nimport torch.utils.data\n"
        "x = 'import torch'  # torch stays in strings\n"
    )
    out = runner.rewrite_imports(src).splitlines()
    assert out[0] == "import distgrad as torch"
    assert out[1] == "import distgrad.nn as nn"
    assert out[2] == "from distgrad import optim"
    assert out[3] == "from distgrad.utils.data import DataLoader"
    assert out[4] == "import distgrad.utils.data; import distgrad as torch"
    assert out[5] == src.splitlines()[5]


def test_falls_like_judges_trend_and_scale():
    assert runner.falls_like([2.3, 2.0, 1.8], [2.3, 2.1, 1.9]) == ""
    assert "does not fall" in runner.falls_like([2.3, 2.4, 2.6], [2.3, 2.0, 1.5])
    assert "scale" in runner.falls_like([230.0, 200.0], [2.3, 2.0])
    assert runner.falls_like([2.3, 2.6], [2.3, 1.0], trend=False) == ""
