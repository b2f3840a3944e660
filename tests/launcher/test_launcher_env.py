"""Per-rank environment: placement from launcher variables, threads, GPU binding, allow-list."""

import pytest
from distgrad.launcher import LaunchError
from distgrad.launcher.env import forwarded_names, parse_env_options
from distgrad.launcher.rank_main import (
    THREAD_VARS,
    Placement,
    gpu_for_rank,
    nvidia_smi_gpus,
    placement_from_env,
    rank_environment,
)

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
        (
            {**SLURM, "SLURM_NODEID": "1", "SLURM_LOCALID": "2", "SLURM_PROCID": "5"},
            Placement(5, 7, 2, 3),
        ),
        ({**SLURM, **HYDRA}, Placement(5, 8, 1, 4)),  # mpiexec inside a Slurm job
        ({}, Placement(0, 1, 0, 1)),
    ],
)
def test_placement_from_launcher_variables(environ, place):
    assert placement_from_env(environ) == place


def test_rank_environment_sets_local_rank_threads_and_gpu():
    env = rank_environment(
        Placement(5, 8, 1, 4), {}, cpu_count=16, detect=lambda: ["0", "1", "2", "3"]
    )
    assert env == {
        "DISTGRAD_LOCAL_RANK": "1",
        "DISTGRAD_LOCAL_SIZE": "4",
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
        "OMP_NUM_THREADS": "4",
        "OPENBLAS_NUM_THREADS": "4",
        "MKL_NUM_THREADS": "4",
        "CUDA_VISIBLE_DEVICES": "1",
    }


@pytest.mark.parametrize(
    "environ, cpu_count, local_size, threads",
    [
        ({}, 16, 4, ("4", "4", "4")),
        ({}, 2, 3, ("1", "1", "1")),  # never 0
        ({"SLURM_CPUS_PER_TASK": "6"}, 64, 4, ("6", "6", "6")),
        ({"OMP_NUM_THREADS": "3"}, 16, 4, ("3", "3", "3")),  # the user's choice, for all
        ({"MKL_NUM_THREADS": "1"}, 16, 4, ("4", "4", "1")),
        ({"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "5"}, 16, 4, ("2", "5", "2")),
    ],
)
def test_threads_per_rank(environ, cpu_count, local_size, threads):
    env = rank_environment(
        Placement(0, local_size, 0, local_size), environ, cpu_count, detect=lambda: []
    )
    assert tuple(env[name] for name in THREAD_VARS) == threads


def _never() -> list[str]:
    raise AssertionError("nvidia-smi asked although a variable says which GPUs there are")


@pytest.mark.parametrize(
    "local_rank, local_size, environ, detect, expected",
    [
        (2, 4, {}, lambda: ["0", "1", "2", "3"], "2"),  # nvidia-smi -L lists 4 GPUs
        (2, 4, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, _never, "6"),  # the node's share
        (1, 2, {"CUDA_VISIBLE_DEVICES": ""}, _never, None),  # no GPU visible
        (1, 2, {}, lambda: [], None),  # no GPU at all
        (1, 2, {"DISTGRAD_GPUS_PER_NODE": "4"}, _never, "1"),  # --gpus-per-node 4
        (1, 2, {"DISTGRAD_GPUS_PER_NODE": "2", "CUDA_VISIBLE_DEVICES": "6,7"}, _never, "7"),
        (1, 2, {"DISTGRAD_GPUS_PER_NODE": "0"}, _never, None),  # --gpus-per-node 0
        # Slurm --gpus-per-task=1: each task sees only its own GPU; keep it.
        (3, 4, {"SLURM_GPUS_PER_TASK": "1", "CUDA_VISIBLE_DEVICES": "3"}, _never, None),
        # --oversubscribe-gpus: 3 ranks share 2 GPUs round-robin
        (2, 3, {"DISTGRAD_OVERSUBSCRIBE_GPUS": "1"}, lambda: ["0", "1"], "0"),
    ],
)
def test_gpu_assignment(local_rank, local_size, environ, detect, expected):
    assert (
        gpu_for_rank(Placement(local_rank, 8, local_rank, local_size), environ, detect) == expected
    )


@pytest.mark.parametrize(
    "environ, detect, source",
    [
        ({}, lambda: ["0", "1"], "nvidia-smi -L"),
        ({"CUDA_VISIBLE_DEVICES": "2,3"}, _never, "CUDA_VISIBLE_DEVICES=2,3"),
        ({"DISTGRAD_GPUS_PER_NODE": "2"}, _never, "--gpus-per-node 2"),
    ],
)
def test_more_local_ranks_than_gpus_is_refused(environ, detect, source):
    with pytest.raises(ValueError) as error:
        gpu_for_rank(Placement(0, 3, 0, 3), environ, detect)
    assert str(error.value) == (
        f"3 local ranks but 2 GPU(s) ({source}), and each rank takes one GPU. Lower the ranks "
        f"per node to 2, pass --oversubscribe-gpus to share the GPUs round-robin, or "
        f"--gpus-per-node 0 to leave CUDA_VISIBLE_DEVICES alone"
    )


def test_nvidia_smi_gpus(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = -L ] || exit 9\n'
        "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'\n"
        "echo '  MIG 3g.40gb     Device  0: (UUID: MIG-2)'\n"
        "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-3)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert nvidia_smi_gpus() == ["0", "1"]
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert nvidia_smi_gpus() == []
    fake.unlink()
    assert nvidia_smi_gpus() == []


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
        "DISTGRAD_SEED",
        "FI_PROVIDER",
        "MPIR_CVAR_CH4_NETMOD",
        "MY_SETTING",
        "NCCL_DEBUG",
        "OMP_NUM_THREADS",
        "PATH",
        "PYTHONPATH",
        "UCX_TLS",
    ]


def test_env_options():
    assert parse_env_options(["A", "B=2", "C="], {"A": "1"}) == {"A": "1", "B": "2", "C": ""}
    with pytest.raises(
        LaunchError, match="^-x MISSING: MISSING is not set here; set it or write -x MISSING=VALUE$"
    ):
        parse_env_options(["MISSING"], {})
    with pytest.raises(LaunchError, match="'1BAD' is not a valid variable name"):
        parse_env_options(["1BAD=x"], {})
