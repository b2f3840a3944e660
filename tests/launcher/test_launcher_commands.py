"""Command building for MPICH, Open MPI and srun: --dry-run snapshots, the choice of
launcher, how COMMAND reaches the per-rank wrapper, and option errors."""

import pytest
from distgrad.launcher import LaunchError
from distgrad.launcher.cli import main, parse_args
from distgrad.launcher.command import RANK_MAIN, rank_argv
from distgrad.launcher.mpi_flavor import detect_flavor
from distgrad.launcher.plan import Here, describe, make_plan

ENVIRON = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/me",
    "PYTHONPATH": "/src/distgrad",
    "NCCL_DEBUG": "WARN",
    "CUDA_VISIBLE_DEVICES": "0,1",
}
#: A machine with 8 cores and no GPU, unless a test gives it some.
NODE0 = Here(cpu_count=8, hostname="node0", python="/usr/bin/python3", root=False, gpus=lambda: [])


def plan(*argv: str, environ=ENVIRON, machine=NODE0):
    return make_plan(parse_args(list(argv)), environ, machine)


def dry_run(*argv: str, environ=ENVIRON, machine=NODE0) -> str:
    return describe(plan(*argv, environ=environ, machine=machine))


def test_mpich_two_hosts():
    assert (
        dry_run(
            "--mpi-flavor",
            "mpich",
            "--mpiexec",
            "/opt/mpich/bin/mpiexec",
            "-H",
            "n1:2,n2:2",
            "--iface",
            "eth1",
            "--ssh",
            "/usr/bin/ssh-wrapper",
            "-x",
            "SEED=7",
            "--tag-output",
            "python3",
            "train.py",
            "--epochs",
            "2",
        )
        == f"""\
launcher: MPICH (hydra)
command:
  /opt/mpich/bin/mpiexec -n 4 -hosts n1:2,n2:2 -launcher ssh -launcher-exec /usr/bin/ssh-wrapper -iface eth1 -prepend-rank -genvlist CUDA_VISIBLE_DEVICES,DISTGRAD_MASTER_ADDR,FI_TCP_IFACE,NCCL_DEBUG,NCCL_SOCKET_IFNAME,PATH,PYTHONPATH,SEED python3 {RANK_MAIN} train.py --epochs 2
forwarded to every rank (the allow-list and -x):
  CUDA_VISIBLE_DEVICES=0,1
  DISTGRAD_MASTER_ADDR=n1
  FI_TCP_IFACE=eth1
  NCCL_DEBUG=WARN
  NCCL_SOCKET_IFNAME=eth1
  PATH=/usr/bin:/bin
  PYTHONPATH=/src/distgrad
  SEED=7
per rank (threads from 8 cores per host, as here):
  rank 0 on n1: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 MKL_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=0
  rank 1 on n1: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 MKL_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=1
  rank 2 on n2: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 MKL_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=0
  rank 3 on n2: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 OPENBLAS_NUM_THREADS=4 MKL_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=1
  and torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (the same numbers), MASTER_ADDR=n1 MASTER_PORT=29500"""
    )


def test_mpich_this_machine_runs_any_program_with_gpus_found_here():
    machine = Here(8, "node0", "/usr/bin/python3", root=False, gpus=lambda: ["0", "1", "2", "3"])
    assert (
        dry_run(
            "--mpi-flavor",
            "mpich",
            "--mpiexec",
            "mpiexec",
            "-np",
            "3",
            "hostname",
            "-s",
            environ={"PATH": "/usr/bin"},
            machine=machine,
        )
        == f"""\
launcher: MPICH (hydra)
command:
  mpiexec -n 3 -genvlist PATH /usr/bin/python3 {RANK_MAIN} --exec hostname -s
forwarded to every rank (the allow-list and -x):
  PATH=/usr/bin
per rank (threads from 8 cores per host, as here):
  rank 0 on node0: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=3 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 CUDA_VISIBLE_DEVICES=0
  rank 1 on node0: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=3 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 CUDA_VISIBLE_DEVICES=1
  rank 2 on node0: DISTGRAD_LOCAL_RANK=2 DISTGRAD_LOCAL_SIZE=3 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 CUDA_VISIBLE_DEVICES=2
  and torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (the same numbers), MASTER_ADDR=127.0.0.1 MASTER_PORT=29500"""
    )


def test_open_mpi_as_root_oversubscribed_with_threads_and_no_gpu_binding():
    assert (
        dry_run(
            "--mpi-flavor",
            "openmpi",
            "--mpiexec",
            "/usr/bin/mpirun",
            "-H",
            "n1:1,n2:1",
            "-np",
            "3",
            "--oversubscribe",
            "--iface",
            "ib0",
            "--ssh",
            "rsh",
            "--threads-per-rank",
            "2",
            "--gpus-per-node",
            "0",
            "--",
            "/venv/bin/python",
            "-m",
            "pkg.train",
            environ={"PATH": "/usr/bin", "OMP_NUM_THREADS": "1"},
            machine=Here(8, "node0", "/usr/bin/python3", root=True, gpus=lambda: ["0"]),
        )
        == f"""\
launcher: Open MPI
command:
  /usr/bin/mpirun -np 3 --host n1:1,n2:1 --oversubscribe --allow-run-as-root --mca plm_rsh_agent rsh --mca btl_tcp_if_include ib0 --mca oob_tcp_if_include ib0 -x DISTGRAD_GPUS_PER_NODE -x DISTGRAD_MASTER_ADDR -x FI_TCP_IFACE -x MKL_NUM_THREADS -x NCCL_SOCKET_IFNAME -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x PATH /venv/bin/python {RANK_MAIN} -m pkg.train
forwarded to every rank (the allow-list and -x):
  DISTGRAD_GPUS_PER_NODE=0
  DISTGRAD_MASTER_ADDR=n1
  FI_TCP_IFACE=ib0
  MKL_NUM_THREADS=2
  NCCL_SOCKET_IFNAME=ib0
  OMP_NUM_THREADS=2
  OPENBLAS_NUM_THREADS=2
  PATH=/usr/bin
per rank (threads from 8 cores per host, as here):
  rank 0 on n1: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
  rank 1 on n2: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=1 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
  rank 2 on n1: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
  and torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE (the same numbers), MASTER_ADDR=n1 MASTER_PORT=29500"""
    )


def test_open_mpi_on_this_machine_always_oversubscribes():
    # distgrad-run checked -np against the logical cores; Open MPI counts physical ones.
    command = plan("--mpi-flavor", "openmpi", "--mpiexec", "mpirun", "-np", "2", "x.py").command
    assert command[:4] == ["mpirun", "-np", "2", "--oversubscribe"]


def test_srun_inside_an_allocation():
    environ = {**ENVIRON, "SLURM_JOB_ID": "42", "SLURM_CPUS_PER_TASK": "4"}
    assert (
        dry_run(
            "--mpiexec",
            "/usr/bin/srun",
            "-np",
            "8",
            "-x",
            "SEED=7",
            "--tag-output",
            "python",
            "train.py",
            environ=environ,
        )
        == f"""\
launcher: Slurm srun
command:
  /usr/bin/srun --mpi=pmi2 --kill-on-bad-exit=1 --ntasks=8 --cpus-per-task=4 --label python {RANK_MAIN} train.py
forwarded to every rank: the whole environment (srun --export=ALL), with:
  SEED=7
per rank: placed by Slurm; each rank sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (torchrun's) and DISTGRAD_LOCAL_RANK/SIZE from SLURM_LOCALID/SLURM_STEP_TASKS_PER_NODE, OMP/OPENBLAS/MKL_NUM_THREADS (unless set) from SLURM_CPUS_PER_TASK or cores / local ranks, and CUDA_VISIBLE_DEVICES to GPU i for local rank i (unless --gpus-per-node 0 or Slurm bound it with --gpus-per-task)"""
    )


@pytest.mark.parametrize(
    "argv, environ, flavor",
    [
        ([], {"SLURM_JOB_ID": "42"}, "srun"),  # auto, inside a Slurm job
        (["-H", "n1,n2"], {"SLURM_JOB_ID": "42"}, "mpich"),  # hosts named: mpiexec
        (["-np", "2"], {}, "mpich"),  # auto, outside Slurm
        ([], {}, "mpich"),  # one rank, but --mpiexec named
        (["--launcher", "mpiexec"], {"SLURM_JOB_ID": "42"}, "mpich"),
        (["--launcher", "srun"], {}, "srun"),  # srun outside an allocation makes one
    ],
)
def test_launcher_choice(argv, environ, flavor, tmp_path):
    mpiexec = tmp_path / "mpiexec"  # detection runs it: MPICH's hydra
    mpiexec.write_text("#!/bin/sh\necho 'HYDRA build details:'\n")
    mpiexec.chmod(0o755)
    assert plan(*argv, "--mpiexec", str(mpiexec), "x.py", environ=environ).flavor == flavor


def test_srun_refuses_host_lists():
    with pytest.raises(LaunchError, match="--launcher srun takes nodes from the Slurm allocation"):
        plan("--launcher", "srun", "--mpiexec", "srun", "-H", "n1,n2", "x.py")


@pytest.mark.parametrize(
    "command, argv",
    [
        (["python", "train.py", "--lr", "1"], ["python", RANK_MAIN, "train.py", "--lr", "1"]),
        (
            ["/v/bin/python3.12", "-u", "-X", "dev", "-Wignore", "t.py"],
            ["/v/bin/python3.12", "-u", "-X", "dev", "-Wignore", RANK_MAIN, "t.py"],
        ),
        (
            ["python", "-m", "pkg.train", "-c", "x"],
            ["python", RANK_MAIN, "-m", "pkg.train", "-c", "x"],
        ),
        (["pypy3", "-OO", "-c", "print(1)"], ["pypy3", "-OO", RANK_MAIN, "-c", "print(1)"]),
        (["train.py", "--epochs", "2"], ["/py", RANK_MAIN, "train.py", "--epochs", "2"]),
        (["./run.sh", "a.py"], ["/py", RANK_MAIN, "--exec", "./run.sh", "a.py"]),
        (["python", "-V"], ["/py", RANK_MAIN, "--exec", "python", "-V"]),  # runs no program
        (["python", "-m"], ["/py", RANK_MAIN, "--exec", "python", "-m"]),
        (["pythonic", "x.py"], ["/py", RANK_MAIN, "--exec", "pythonic", "x.py"]),
    ],
)
def test_command_goes_through_the_rank_wrapper(command, argv):
    assert rank_argv(command, python="/py") == argv


def test_gpus_per_node_refuses_more_local_ranks():
    args = (
        "--mpi-flavor",
        "mpich",
        "--mpiexec",
        "mpiexec",
        "-H",
        "n1:3,n2:1",
        "--gpus-per-node",
        "2",
        "x.py",
    )
    with pytest.raises(LaunchError) as error:
        plan(*args)
    assert str(error.value) == (
        "host n1: 3 local ranks but 2 GPU(s) (--gpus-per-node 2), and each rank takes one GPU. "
        "Lower the ranks per node to 2, pass --oversubscribe-gpus to share the GPUs "
        "round-robin, or --gpus-per-node 0 to leave CUDA_VISIBLE_DEVICES alone"
    )
    shared = plan(*args[:-1], "--oversubscribe-gpus", "x.py", environ={"PATH": "/bin"})
    assert [rank.env["CUDA_VISIBLE_DEVICES"] for rank in shared.ranks] == ["0", "1", "0", "0"]


def test_gpus_found_here_limit_local_ranks():
    machine = Here(8, "node0", "/usr/bin/python3", root=False, gpus=lambda: ["0"])
    with pytest.raises(
        LaunchError,
        match=r"^host node0: 2 local ranks but 1 GPU\(s\) "
        r"\(nvidia-smi -L\), and each rank takes one GPU",
    ):
        plan(
            "--mpi-flavor",
            "mpich",
            "--mpiexec",
            "m",
            "-np",
            "2",
            "x.py",
            environ={},
            machine=machine,
        )


def test_dry_run_through_main(capsys):
    status = main(
        ["--mpi-flavor", "mpich", "--mpiexec", "mpiexec", "--dry-run", "-np", "2", "python", "x.py"]
    )
    assert status == 0
    assert capsys.readouterr().out.startswith("launcher: MPICH (hydra)\ncommand:\n  mpiexec -n 2 ")


def test_bad_input_exits_2_with_the_reason(capsys):
    status = main(
        [
            "--mpi-flavor",
            "mpich",
            "--mpiexec",
            "mpiexec",
            "-H",
            "a:2,b:2",
            "-np",
            "5",
            "python",
            "x.py",
        ]
    )
    assert status == 2
    assert capsys.readouterr().err == (
        "distgrad-run: error: -np 5 is more than the 4 slots available (a: 2, b: 2). Lower -np, "
        "give hosts more slots (-H host:N or 'host slots=N' in the hostfile), or pass "
        "--oversubscribe to run more ranks than slots.\n"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-np", "2"], "no COMMAND given (e.g. distgrad-run -np 2 python train.py)"),
        (["-np", "0", "x.py"], "argument -np/-n: must be at least 1, got 0"),
        (
            ["--threads-per-rank", "two", "x.py"],
            "argument --threads-per-rank: must be a whole number, got 'two'",
        ),
        (["--gpus-per-node", "-1", "x.py"], "argument --gpus-per-node: must be at least 0, got -1"),
        (["--launcher", "mpich", "x.py"], "argument --launcher: invalid choice: 'mpich'"),
        (["--timeout", "0", "x.py"], "argument --timeout: must be more than 0 seconds, got 0"),
    ],
)
def test_option_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"distgrad-run: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "version_text, flavor",
    [
        ("HYDRA build details:\n    Version: 4.2.0\n", "mpich"),
        ("Intel(R) MPI Library for Linux* OS, Version 2021.10\n", "mpich"),
        ("mpiexec (OpenRTE) 4.1.5\n", "openmpi"),
        ("mpiexec (Open MPI) 5.0.3\n", "openmpi"),
    ],
)
def test_detect_flavor(tmp_path, version_text, flavor):
    fake = tmp_path / "mpiexec"
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{version_text}EOF\n")
    fake.chmod(0o755)
    assert detect_flavor(str(fake)) == flavor


def test_detect_flavor_unknown(tmp_path):
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\necho 'mystery launcher 1.0'\n")
    fake.chmod(0o755)
    with pytest.raises(
        LaunchError,
        match="says 'mystery launcher 1.0', which is neither MPICH "
        r"\(hydra\) nor Open MPI; pass --mpi-flavor mpich",
    ):
        detect_flavor(str(fake))


def test_one_rank_needs_no_mpiexec():
    job = plan("-np", "1", "python", "train.py", environ={"PATH": "/nowhere"})
    assert job.flavor == "local"
    assert job.command == ["python", RANK_MAIN, "train.py"]


def test_torchrun_options():
    args = ("--mpi-flavor", "mpich", "--mpiexec", "m", "-H", "n1:8,n2:8,n3:8")
    job = plan(*args, "--nproc_per_node", "2", "--nnodes", "2", "x.py")
    assert job.command[:5] == ["m", "-n", "4", "-hosts", "n1:2,n2:2"]
    assert [r.env["RANK"] for r in job.ranks] == ["0", "1", "2", "3"]
    assert [r.env["LOCAL_RANK"] for r in job.ranks] == ["0", "1", "0", "1"]
    assert {r.env["MASTER_ADDR"] for r in job.ranks} == {"n1"}
    assert {r.env["WORLD_SIZE"] for r in job.ranks} == {"4"}
    local = plan(
        "--mpi-flavor",
        "mpich",
        "--mpiexec",
        "m",
        "--nproc-per-node",
        "3",
        "--gpus-per-node",
        "0",
        "x.py",
    )
    assert local.command[:3] == ["m", "-n", "3"]
    with pytest.raises(LaunchError, match="disagrees with --nproc-per-node 3"):
        plan("--mpiexec", "m", "--mpi-flavor", "mpich", "--nproc-per-node", "3", "-np", "2", "x")
    with pytest.raises(LaunchError, match="--nnodes 2 needs the nodes"):
        plan("--nnodes", "2", "--nproc-per-node", "1", "x.py")
    srun = plan(
        "--launcher", "srun", "--mpiexec", "srun", "--nnodes", "2", "--nproc-per-node", "4", "x.py"
    )
    assert "--nodes=2" in srun.command and "--ntasks-per-node=4" in srun.command
