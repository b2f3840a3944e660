"""Fixtures for the launcher tests; helpers are in launcher_testing.py.

The launcher is imported as ``launcher.*`` from the repository root, which works
before and after ``pip install -e .`` (that maps it to ``distgrad.launcher``).
Both the root and this folder go on sys.path, whatever pytest's import mode.
"""

import sys
import uuid
from pathlib import Path

import pytest

for folder in (Path(__file__).resolve().parents[2], Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def token() -> str:
    """A unique word to put on a job's command line, to find its processes later."""
    return f"dgtok-{uuid.uuid4().hex[:12]}"
