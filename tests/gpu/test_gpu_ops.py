"""Every op table on cupy in float32, against the numpy references. (Each family's own
``test_cuda_matches_cpu``, also marked ``gpu``, compares float64 forwards and first
gradients on the GPU with the CPU's.)"""

import importlib

import numpy as np
import pytest

from tests.ops.harness import check_forward

pytestmark = pytest.mark.gpu

FAMILIES = (
    "activation",
    "conv",
    "elementwise",
    "indexing",
    "linalg",
    "loss",
    "normalization",
    "pool",
    "reduction",
    "shape",
)
CASES = [
    case
    for family in FAMILIES
    for case in importlib.import_module(f"tests.ops.test_{family}").CASES
]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.float32], ids=[c.name for c in CASES if c.float32]
)
def test_float32_forward_on_cuda(case):
    check_forward(case, np.float32, device="cuda")
