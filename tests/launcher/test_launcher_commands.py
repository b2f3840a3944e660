"""Command building for MPICH, Open MPI and srun: --dry-run snapshots and flavor detection."""

import pytest

from launcher import LaunchError
from launcher.cli import build_parser, main
from launcher.mpi_flavor import detect_flavor
from launcher.plan import RANK_MAIN, describe, make_plan

ENVIRON = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/me",
    "PYTHONPATH": "/src/distgrad",
    "NCCL_DEBUG": "WARN",
    "CUDA_VISIBLE_DEVICES": "0,1",
}


def dry_run(*argv: str, environ=ENVIRON) -> str:
    args = build_parser().parse_args([*argv, "train.py", "--epochs", "2"])
    plan = make_plan(args, environ, cpu_count=8, hostname="node0", python="/usr/bin/python3")
    return describe(plan)


def test_mpich_two_hosts():
    assert dry_run(
        "--launcher", "mpich", "--mpiexec", "/opt/mpich/bin/mpiexec", "-H", "n1:2,n2:2",
        "--iface", "eth1", "--ssh", "/usr/bin/ssh-wrapper", "-x", "SEED=7",
    ) == f"""\
launcher: MPICH (hydra)
command:
  /opt/mpich/bin/mpiexec -n 4 -hosts n1:2,n2:2 -launcher ssh -launcher-exec /usr/bin/ssh-wrapper -iface eth1 -prepend-rank -genvlist CUDA_VISIBLE_DEVICES,FI_TCP_IFACE,NCCL_DEBUG,NCCL_SOCKET_IFNAME,PATH,PYTHONPATH,SEED /usr/bin/python3 {RANK_MAIN} train.py --epochs 2
forwarded to every rank:
  CUDA_VISIBLE_DEVICES=0,1
  FI_TCP_IFACE=eth1
  NCCL_DEBUG=WARN
  NCCL_SOCKET_IFNAME=eth1
  PATH=/usr/bin:/bin
  PYTHONPATH=/src/distgrad
  SEED=7
per rank (threads assume 8 cores per host, as here):
  rank 0 on n1: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=0
  rank 1 on n1: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=1
  rank 2 on n2: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=0
  rank 3 on n2: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=2 OMP_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=1"""


def test_mpich_this_machine_without_tags_or_gpu_binding():
    assert dry_run(
        "--launcher", "mpich", "--mpiexec", "mpiexec", "-np", "3", "--no-tag-output",
        "--no-gpu-bind",
    ) == f"""\
launcher: MPICH (hydra)
command:
  mpiexec -n 3 -genvlist CUDA_VISIBLE_DEVICES,DISTGRAD_GPU_BIND,NCCL_DEBUG,PATH,PYTHONPATH /usr/bin/python3 {RANK_MAIN} train.py --epochs 2
forwarded to every rank:
  CUDA_VISIBLE_DEVICES=0,1
  DISTGRAD_GPU_BIND=none
  NCCL_DEBUG=WARN
  PATH=/usr/bin:/bin
  PYTHONPATH=/src/distgrad
per rank (threads assume 8 cores per host, as here):
  rank 0 on node0: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=3 OMP_NUM_THREADS=2
  rank 1 on node0: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=3 OMP_NUM_THREADS=2
  rank 2 on node0: DISTGRAD_LOCAL_RANK=2 DISTGRAD_LOCAL_SIZE=3 OMP_NUM_THREADS=2"""


def test_open_mpi_hostfile_oversubscribed(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("n1 slots=1\nn2 slots=1\n")
    text = dry_run(
        "--launcher", "openmpi", "--mpiexec", "/usr/bin/mpirun", "--hostfile", str(hostfile),
        "-np", "3", "--oversubscribe", "--iface", "ib0", "--ssh", "rsh",
        environ={"PATH": "/usr/bin", "OMP_NUM_THREADS": "1"},
    )
    assert text == f"""\
launcher: Open MPI
command:
  /usr/bin/mpirun -np 3 --host n1:1,n2:1 --oversubscribe --mca plm_rsh_agent rsh --mca btl_tcp_if_include ib0 --mca oob_tcp_if_include ib0 --tag-output -x FI_TCP_IFACE -x NCCL_SOCKET_IFNAME -x OMP_NUM_THREADS -x PATH /usr/bin/python3 {RANK_MAIN} train.py --epochs 2
forwarded to every rank:
  FI_TCP_IFACE=ib0
  NCCL_SOCKET_IFNAME=ib0
  OMP_NUM_THREADS=1
  PATH=/usr/bin
per rank (threads assume 8 cores per host, as here):
  rank 0 on n1: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=2
  rank 1 on n2: DISTGRAD_LOCAL_RANK=0 DISTGRAD_LOCAL_SIZE=1
  rank 2 on n1: DISTGRAD_LOCAL_RANK=1 DISTGRAD_LOCAL_SIZE=2"""


def test_srun():
    assert dry_run("--launcher", "srun", "--mpiexec", "/usr/bin/srun", "-np", "8") == f"""\
launcher: Slurm srun
command:
  /usr/bin/srun --mpi=pmi2 --kill-on-bad-exit=1 --ntasks=8 --label /usr/bin/python3 {RANK_MAIN} train.py --epochs 2
forwarded to every rank: the whole environment (srun --export=ALL)
per rank: placed by Slurm; each rank sets DISTGRAD_LOCAL_RANK/SIZE from SLURM_LOCALID/SLURM_STEP_TASKS_PER_NODE, OMP_NUM_THREADS from SLURM_CPUS_PER_TASK (or cores / local ranks) and CUDA_VISIBLE_DEVICES by local rank"""


def test_srun_refuses_host_lists():
    with pytest.raises(LaunchError, match="--launcher srun takes nodes from the Slurm allocation"):
        dry_run("--launcher", "srun", "--mpiexec", "srun", "-H", "n1,n2")


def test_dry_run_through_main(capsys):
    status = main(["--launcher", "mpich", "--mpiexec", "mpiexec", "--dry-run", "-np", "2", "x.py"])
    assert status == 0
    assert capsys.readouterr().out.startswith("launcher: MPICH (hydra)\ncommand:\n  mpiexec -n 2 ")


def test_bad_input_exits_2_with_the_reason(capsys):
    status = main(["--launcher", "mpich", "--mpiexec", "mpiexec", "-H", "a:2,b:2", "-np", "5", "x.py"])
    assert status == 2
    assert capsys.readouterr().err == (
        "distgrad-run: error: -np 5 is more than the 4 slots available (a: 2, b: 2). Lower -np, "
        "give hosts more slots (-H host:N or 'host slots=N' in the hostfile), or pass "
        "--oversubscribe to run more ranks than slots.\n"
    )


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
    with pytest.raises(LaunchError, match="says 'mystery launcher 1.0', which is neither"):
        detect_flavor(str(fake))
