"""The user's COMMAND, turned into what every rank runs: always through the per-rank
wrapper :mod:`.rank_main`, started by file path.

- ``python [OPTIONS] (SCRIPT | -m MODULE | -c CODE) ARGS`` (any ``python*``/``pypy*``):
  the wrapper goes in front of the script, ``python [OPTIONS] rank_main.py SCRIPT
  ARGS``, so an uncaught exception on any rank aborts the whole job;
- ``SCRIPT.py ARGS`` (a convenience): the same, with the Python running distgrad-run;
- any other program: ``python rank_main.py --exec PROGRAM ARGS`` sets the per-rank
  variables, then replaces itself with the program.
"""

from __future__ import annotations

import os
import re

from . import LaunchError

#: The per-rank wrapper every rank runs first, by path (see :mod:`.rank_main`).
RANK_MAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rank_main.py")

PYTHON_NAME = re.compile(r"^(python|pypy)[0-9.]*$")
#: Interpreter options that run a program normally: flags, and options with a value.
_FLAGS = re.compile(r"^-[bBdEIOPqRsSuv]+$")
_WITH_VALUE = ("-X", "-W", "--check-hash-based-pycs")


def _split_python(command: list[str]) -> int | None:
    """Index in ``command`` (``python ...``) of the SCRIPT, ``-m`` or ``-c`` that starts
    the program, or None when it runs none this wrapper understands (``python -V``)."""
    index = 1
    while index < len(command):
        word = command[index]
        if word in ("-m", "-c"):
            return index if index + 1 < len(command) else None
        if not word.startswith("-"):
            return index
        if word in _WITH_VALUE:
            index += 2
        elif word.startswith(("-X", "-W")) or _FLAGS.match(word):
            index += 1
        else:
            return None
    return None


def rank_argv(command: list[str], python: str) -> list[str]:
    """What every rank runs for the user's ``command``; ``python`` is the interpreter
    for bare ``*.py`` scripts and for the wrapper of non-Python programs."""
    if not command:
        raise LaunchError(
            "no command given; write it after the options, e.g. "
            "distgrad-run -np 2 python train.py --epochs 3"
        )
    if command[0].endswith(".py"):
        return [python, RANK_MAIN, *command]
    if PYTHON_NAME.match(os.path.basename(command[0])):
        start = _split_python(command)
        if start is not None:
            return [*command[:start], RANK_MAIN, *command[start:]]
    return [python, RANK_MAIN, "--exec", *command]
