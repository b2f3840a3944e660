"""The compatibility corpus runner: real PyTorch programs, imports rewritten to distgrad.

Each program in ``programs/`` is a PyTorch program from a public source (named in its header:
``# Source: <repo> <path>``), cut to a few steps on small synthetic data with the original
shapes, model and training code. A program appends its training losses (Python floats) to a
list ``LOSSES`` it defines. The runner rewrites only the import lines (``import torch`` ->
``import distgrad as torch``, ``from torch.nn import ...`` -> ``from distgrad.nn import ...``)
and runs the program under distgrad; where torch is installed it also runs the unmodified
program under torch and checks that distgrad's losses fall as torch's do.

``python tests/compat/runner.py [--distgrad-only] [names...]`` prints one table (program | source | runs | first
failure) and a last line ``compat: N/M``, where M counts the programs that run under torch (all
of them without torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
import signal
import sys
import traceback
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent / "programs"
TIME_LIMIT_S = 180  # wall clock, per program and framework: generous for loaded machines

# (pattern, replacement) on whole import lines; a bare ``import torch.x`` also binds ``torch``.
_REWRITES = [
    (re.compile(r"^(\s*)import torch\.([\w.]+) as (\w+)\s*$"), r"\1import distgrad.\2 as \3"),
    (re.compile(r"^(\s*)import torch as (\w+)\s*$"), r"\1import distgrad as \2"),
    (
        re.compile(r"^(\s*)import torch\.([\w.]+)\s*$"),
        r"\1import distgrad.\2; import distgrad as torch",
    ),
    (re.compile(r"^(\s*)import torch\s*$"), r"\1import distgrad as torch"),
    (re.compile(r"^(\s*)from torch\.([\w.]+) import "), r"\1from distgrad.\2 import "),
    (re.compile(r"^(\s*)from torch import "), r"\1from distgrad import "),
]


def rewrite_imports(source: str) -> str:
    """``source`` with each import of torch (or a torch submodule) turned into distgrad's."""
    lines = []
    for line in source.splitlines():
        for pattern, repl in _REWRITES:
            new = pattern.sub(repl, line)
            if new != line:
                line = new
                break
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Program:
    name: str
    path: Path
    source: str
    origin: str  # "<repo> <path>"
    needs: tuple[str, ...]  # distgrad names it needs that another helper is adding
    trend: bool  # False (header "# Compare: scale"): noisy losses, compare the scale only

    @classmethod
    def load(cls, path: Path) -> Program:
        text = path.read_text()
        origin = re.search(r"^# Source: (.+)$", text, re.M)
        needs = re.search(r"^# Needs: (.+)$", text, re.M)
        compare = re.search(r"^# Compare: (.+)$", text, re.M)
        return cls(
            path.stem,
            path,
            text,
            origin.group(1).strip() if origin else "?",
            tuple(needs.group(1).split()) if needs else (),
            not (compare and compare.group(1).strip() == "scale"),
        )


def programs(names=()) -> list[Program]:
    """The corpus, sorted by name (only ``names`` if given)."""
    found = [Program.load(p) for p in sorted(PROGRAMS.glob("*.py"))]
    return [p for p in found if not names or p.name in names]


@dataclasses.dataclass
class Outcome:
    ok: bool
    losses: list
    error: str = ""


class _Timeout(Exception):
    """A program ran past the runner's time limit."""


def _alarm(signum, frame):
    raise _Timeout(f"ran longer than {TIME_LIMIT_S} s")


def _reset(framework) -> None:
    if framework.__name__ == "torch":
        framework.set_num_threads(1)
    framework.set_default_dtype(framework.float32)
    framework.manual_seed(0)


def execute(program: Program, framework: str, time_limit: int | None = None) -> Outcome:
    """Run ``program`` under ``"distgrad"`` or ``"torch"`` in this process (stopped after
    ``time_limit`` seconds by SIGALRM when given; pytest runs leave that to pytest-timeout)."""
    import importlib

    module = importlib.import_module(framework)
    source = rewrite_imports(program.source) if framework == "distgrad" else program.source
    namespace = {"__name__": "__main__", "__file__": str(program.path)}
    _reset(module)
    use_alarm = time_limit is not None and hasattr(signal, "SIGALRM")
    old = signal.signal(signal.SIGALRM, _alarm) if use_alarm else None
    if old is not None:
        signal.alarm(time_limit)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compile(source, str(program.path), "exec"), namespace)
        losses = [float(v) for v in namespace.get("LOSSES", [])]
        if not losses:
            return Outcome(False, [], "the program recorded no losses")
        if not all(math.isfinite(v) for v in losses):
            return Outcome(False, losses, f"non-finite loss: {losses}")
        return Outcome(True, losses)
    except BaseException as e:  # noqa: BLE001 - a corpus program may raise anything
        if isinstance(e, KeyboardInterrupt):
            raise
        return Outcome(False, [], _first_line(e, program))
    finally:
        if old is not None:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        _reset(module)


def _first_line(e: BaseException, program: Program) -> str:
    """``Type: message`` and the program line that raised it."""
    where = ""
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        if frame.filename == str(program.path):
            where = f" (line {frame.lineno}: {(frame.line or '').strip()[:60]})"
            break
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg[:160]}{where}"


def _ends(losses: list) -> tuple[float, float]:
    """Mean of the first and of the last third (at least one loss each)."""
    k = max(1, len(losses) // 3)
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def falls_like(mine: list, ref: list, trend: bool = True) -> str:
    """'' when distgrad's losses behave like torch's (fall when they fall, same scale), else
    why not. Inits and synthetic data differ between the frameworks, so only the trend and
    the order of magnitude can be compared: where torch's loss falls (first third to last
    third), distgrad's must fall too (5% slack), or end no higher than 1.5x torch's end."""
    if len(mine) != len(ref):
        return f"{len(mine)} losses recorded, torch recorded {len(ref)}"
    (m0, m1), (r0, r1) = _ends(mine), _ends(ref)
    if trend and len(ref) >= 2 and r1 < r0 and not (m1 <= 1.05 * m0 or m1 <= 1.5 * r1):
        return f"loss does not fall: {m0:.4g} -> {m1:.4g} (torch {r0:.4g} -> {r1:.4g})"
    a, b = abs(mine[0]), abs(ref[0])
    if max(a, b) > 1e-3 and not (max(a, b) <= 10 * min(a, b) + 1e-2):
        return f"first loss {mine[0]:.4g} is not on torch's scale ({ref[0]:.4g})"
    return ""


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@dataclasses.dataclass
class Row:
    program: Program
    runs_torch: bool | None  # None: torch not installed
    runs: bool
    failure: str


def check(program: Program, with_torch: bool | None = None, time_limit: int | None = None) -> Row:
    """Run one program under distgrad (and torch) and judge it."""
    if with_torch is None:
        with_torch = torch_available()
    ref = execute(program, "torch", time_limit) if with_torch else None
    mine = execute(program, "distgrad", time_limit)
    failure = mine.error
    if mine.ok and ref is not None and ref.ok:
        failure = falls_like(mine.losses, ref.losses, program.trend)
    return Row(program, None if ref is None else ref.ok, mine.ok and not failure, failure)


def table(rows: list[Row]) -> str:
    lines = ["program | source | runs | first failure", "--- | --- | --- | ---"]
    for r in rows:
        runs = "yes" if r.runs else "no"
        if r.runs_torch is False:
            runs += " (fails under torch too)"
        lines.append(f"{r.program.name} | {r.program.origin} | {runs} | {r.failure or '-'}")
    counted = [r for r in rows if r.runs_torch is not False]
    lines.append(f"compat: {sum(r.runs for r in counted)}/{len(counted)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    with_torch = None
    if "--distgrad-only" in argv:  # skip the torch runs (and comparisons)
        argv, with_torch = [a for a in argv if a != "--distgrad-only"], False
    rows = [check(p, with_torch, TIME_LIMIT_S) for p in programs(argv)]
    print(table(rows))
    counted = [r for r in rows if r.runs_torch is not False]
    return 0 if all(r.runs for r in counted) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
