"""ZeRO-1/2/3 on cupy arrays: two ranks sharing the GPU (MPI with host staging, since NCCL
refuses two ranks on one GPU) must equal one process to 1e-12 in float64, as on the CPU."""

import pytest

import distgrad as dg
from tests import mpijob

from .gpu_helpers import ROOT, requires_mpi

pytestmark = [
    pytest.mark.gpu,
    requires_mpi,
    pytest.mark.skipif(not dg.cuda.is_available(), reason="needs a GPU"),
]

WORKER = ROOT / "tests" / "distributed" / "workers" / "zero_equivalence.py"


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_on_gpu_equal_to_single_process(stage):
    env = {"DISTGRAD_COLLECTIVE_TIMEOUT": 60, "ZERO_DEVICE": "cuda"}
    job = mpijob.run(WORKER, stage, "adam", n=2, env=env, gpu=True, timeout=240).check()
    assert job.stdout.count("OK ") == 2, job.stdout
