"""Per-rank environment: placement from launcher variables, threads, GPUs, allow-list."""

import pytest

from launcher import LaunchError
from launcher.env import forwarded_names, parse_env_options
from launcher.rank_main import Placement, placement_from_env, rank_environment, visible_gpus

HYDRA = {"PMI_RANK": "5", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "4"}
OPEN_MPI = {
    "OMPI_COMM_WORLD_RANK": "5",
    "OMPI_COMM_WORLD_SIZE": "8",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
}
# srun -n 7 over three nodes with 3, 3 and 1 tasks: this task is on the last node.
SLURM = {
    "SLURM_PROCID": "6",
    "SLURM_NTASKS": "7",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "2",
    "SLURM_STEP_TASKS_PER_NODE": "3(x2),1",
}


@pytest.mark.parametrize(
    "environ, place",
    [
        (HYDRA, Placement(5, 8, 1, 4)),
        (OPEN_MPI, Placement(5, 8, 1, 4)),
        (SLURM, Placement(6, 7, 0, 1)),
        ({**SLURM, "SLURM_NODEID": "1", "SLURM_LOCALID": "2", "SLURM_PROCID": "5"},
         Placement(5, 7, 2, 3)),
        ({**SLURM, **HYDRA}, Placement(5, 8, 1, 4)),  # mpiexec inside a Slurm job
        ({}, Placement(0, 1, 0, 1)),
    ],
)
def test_placement_from_launcher_variables(environ, place):
    assert placement_from_env(environ) == place


def test_rank_environment_sets_local_rank_threads_and_gpu():
    env = rank_environment(Placement(5, 8, 1, 4), {}, cpu_count=16, gpus=["0", "1", "2", "3"])
    assert env == {
        "DISTGRAD_LOCAL_RANK": "1",
        "DISTGRAD_LOCAL_SIZE": "4",
        "OMP_NUM_THREADS": "4",
        "CUDA_VISIBLE_DEVICES": "1",
    }


@pytest.mark.parametrize(
    "environ, cpu_count, local_size, threads",
    [
        ({}, 16, 4, "4"),
        ({}, 2, 3, "1"),  # never 0
        ({"SLURM_CPUS_PER_TASK": "6"}, 64, 4, "6"),
        ({"OMP_NUM_THREADS": "3"}, 16, 4, None),  # the user's choice stays
    ],
)
def test_threads_per_rank(environ, cpu_count, local_size, threads):
    env = rank_environment(Placement(0, local_size, 0, local_size), environ, cpu_count, gpus=[])
    assert env.get("OMP_NUM_THREADS") == threads


@pytest.mark.parametrize(
    "gpus, local_rank, environ, expected",
    [
        (["4", "5", "6", "7"], 2, {}, "6"),  # CUDA_VISIBLE_DEVICES=4,5,6,7 given to the node
        (["3"], 1, {}, "3"),  # Slurm already gave this task its own GPU
        (["0", "1"], 3, {}, "1"),  # more ranks than GPUs: shared round-robin
        ([], 0, {}, None),  # no GPU
        (["0", "1"], 1, {"DISTGRAD_GPU_BIND": "none"}, None),  # --no-gpu-bind
    ],
)
def test_gpu_assignment(gpus, local_rank, environ, expected):
    env = rank_environment(Placement(local_rank, 4, local_rank, 4), environ, 8, gpus)
    assert env.get("CUDA_VISIBLE_DEVICES") == expected


def test_visible_gpus(tmp_path):
    (tmp_path / "0000:3b:00.0").mkdir()
    (tmp_path / "0000:5e:00.0").mkdir()
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, str(tmp_path)) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, str(tmp_path)) == []
    assert visible_gpus({}, str(tmp_path)) == ["0", "1"]
    assert visible_gpus({}, str(tmp_path / "absent")) == []


def test_allow_list():
    environ = {
        "PATH": "/bin",
        "PYTHONPATH": "/src",
        "HOME": "/root",
        "SSH_AUTH_SOCK": "/tmp/agent",
        "DISTGRAD_SEED": "1",
        "NCCL_DEBUG": "INFO",
        "UCX_TLS": "tcp",
        "FI_PROVIDER": "tcp",
        "MPIR_CVAR_CH4_NETMOD": "ofi",
        "OMP_NUM_THREADS": "2",
        "MY_SETTING": "x",
    }
    assert forwarded_names(environ, ["MY_SETTING"]) == [
        "DISTGRAD_SEED", "FI_PROVIDER", "MPIR_CVAR_CH4_NETMOD", "MY_SETTING", "NCCL_DEBUG",
        "OMP_NUM_THREADS", "PATH", "PYTHONPATH", "UCX_TLS",
    ]


def test_env_options():
    assert parse_env_options(["A", "B=2", "C="], {"A": "1"}) == {"A": "1", "B": "2", "C": ""}
    with pytest.raises(LaunchError, match="^-x MISSING: MISSING is not set here; set it or "
                                          "write -x MISSING=VALUE$"):
        parse_env_options(["MISSING"], {})
    with pytest.raises(LaunchError, match="'1BAD' is not a valid variable name"):
        parse_env_options(["1BAD=x"], {})
