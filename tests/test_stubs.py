"""The shipped type stubs (``distgrad/__init__.pyi``, ``distgrad/autograd/tensor.pyi``) are what
``tools/gen_stubs.py`` generates from the current code: a new or changed Tensor method or
top-level function without regenerated stubs fails here."""

import pathlib
import subprocess
import sys

import pytest

import distgrad

ROOT = pathlib.Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tools" / "gen_stubs.py"

pytestmark = pytest.mark.skipif(not GENERATOR.exists(), reason="needs the source tree (tools/)")


def test_stubs_are_current():
    pytest.importorskip("ruff")  # the generator formats its output with ruff
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_stubs_and_marker_ship_with_the_package():
    package = pathlib.Path(distgrad.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "__init__.pyi").exists() and (package / "autograd" / "tensor.pyi").exists()


def test_tensor_stub_lists_the_installed_methods():
    stub = (pathlib.Path(distgrad.__file__).parent / "autograd" / "tensor.pyi").read_text()
    for method in ("def reshape(self", "def __add__(self", "def sum(self", "def backward(self"):
        assert method in stub
    assert "def relu(self, inplace=...) -> Tensor: ..." in stub
