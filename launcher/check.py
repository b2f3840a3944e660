"""``distgrad-run --check``: bounded preflight probes and one verdict line.

Probes, each stopping the check at the first failure: the launcher is found and
recognised, mpi4py uses the same MPI, the job's options are valid (slots, GPUs),
the hosts resolve, ``--iface`` exists here, and a 2-rank allreduce (one rank per
host on the first two hosts) runs through the same launcher, options and
environment as the real job; it also reports the GPUs cupy sees on those hosts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

from . import LaunchError
from .command import PYTHON_NAME
from .mpi_flavor import FLAVOR_NAMES
from .plan import Plan, plan_here
from .supervise import run_supervised

#: Seconds allowed to the allreduce probe when --timeout is not given.
PROBE_TIMEOUT = 60

#: Runs on every probe rank; 1 MiB per rank so large messages (rendezvous) are exercised.
PROBE = r"""
import importlib.util
from array import array
from mpi4py import MPI
comm = MPI.COMM_WORLD
send = array("d", [comm.rank + 1.0]) * (1 << 17)
recv = array("d", [0.0]) * (1 << 17)
comm.Allreduce(send, recv)
expected = comm.size * (comm.size + 1) / 2
gpus = None
if importlib.util.find_spec("cupy"):
    try:
        import cupy
        gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:
        gpus = f"cupy fails: {error}".splitlines()[0]
gpus = comm.gather(gpus)
if comm.rank == 0:
    verdict = "ok" if recv[0] == recv[-1] == expected else "WRONG RESULT"
    print(f"allreduce {verdict}: {comm.size} ranks")
    for rank, count in enumerate(gpus):
        print(f"gpus on rank {rank}: {count}")
"""

_LIBRARY_PROBE = (
    "import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
    "print(MPI.Get_library_version().splitlines()[0])"
)
_LIBRARY_WORDS = {
    "mpich": ("MPICH", "Intel"),
    "openmpi": ("Open MPI",),
    "srun": ("",),
    "local": ("",),
}
_TRANSPORT_PREFIXES = ("UCX_", "FI_", "MPIR_CVAR_CH4", "OMPI_MCA_", "NCCL_SOCKET", "NCCL_IB")


class _Failed(Exception):
    """A probe failed; the message is the reason in the verdict line."""


def _say(tag: str, message: str) -> None:
    print(f"  [{tag}] {message}", flush=True)


def interpreter(command: list[str]) -> str:
    """The Python the ranks of ``command`` will run: its own ``python...`` (as PATH finds
    it), else the one running distgrad-run (bare ``*.py`` scripts and the wrapper of other
    programs)."""
    if command and PYTHON_NAME.match(os.path.basename(command[0])):
        return shutil.which(command[0]) or command[0]
    return sys.executable


def _check_distgrad(python: str) -> None:
    """The program's Python must import distgrad (and numpy) as the ranks will."""
    try:
        result = subprocess.run(
            [python, "-c", "import distgrad"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _Failed(f"cannot run {python}: {error}") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise _Failed(f"distgrad does not import in {python}, which runs the program: {last}")
    _say("ok", f"distgrad imports in {python}")


def _probe_args(args: argparse.Namespace, host_names: list[str], python: str) -> argparse.Namespace:
    """The job's options, changed to run the allreduce probe on 2 ranks with the program's
    Python, one per host on the first two hosts, leaving GPUs unbound (the probe counts
    them)."""
    probe = argparse.Namespace(**vars(args))
    probe.np, probe.command, probe.oversubscribe = 2, [python, "-c", PROBE], True
    probe.nproc_per_node = probe.nnodes = None
    probe.tag_output, probe.gpus_per_node, probe.oversubscribe_gpus = False, 0, False
    if host_names:
        probe.hosts, probe.hostfile = ",".join(f"{name}:1" for name in host_names[:2]), None
    return probe


def _check_library(flavor: str, python: str) -> None:
    try:
        result = subprocess.run(
            [python, "-c", _LIBRARY_PROBE], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        raise _Failed(f"{python} took over 30 s to import mpi4py") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise _Failed(f"mpi4py does not load in {python}: {last} (pip install mpi4py)")
    library = " ".join(result.stdout.split())
    if not any(word in library for word in _LIBRARY_WORDS[flavor]):
        raise _Failed(
            f"mpi4py uses {library!r} but the launcher is {FLAVOR_NAMES[flavor]}; "
            f"use the mpiexec of the same MPI (--mpiexec) or rebuild mpi4py against it"
        )
    _say("ok", f"mpi4py uses {library}")


def _layout(plan: Plan) -> Counter:
    """Ranks per host of the job (empty when Slurm places them)."""
    return Counter(preview.host for preview in plan.ranks or [])


def _check_hosts(host_names: list[str]) -> None:
    for name in host_names:
        try:
            socket.getaddrinfo(name, None)
        except socket.gaierror as error:
            raise _Failed(f"host {name!r} does not resolve: {error.strerror}") from None
    _say("ok", f"hosts resolve: {', '.join(host_names)}")


def _check_iface(iface: str) -> None:
    if not os.path.isdir(f"/sys/class/net/{iface}"):
        present = ", ".join(sorted(os.listdir("/sys/class/net")))
        raise _Failed(f"network interface {iface!r} does not exist here (have: {present})")
    _say("ok", f"network interface {iface} exists here")


def _check_gpus(text: str, probed: list[str], plan: Plan, args: argparse.Namespace) -> None:
    """Report the GPUs cupy saw on the probed hosts; fail when the job would bind more
    local ranks than a host has GPUs."""
    counts = dict(re.findall(r"^gpus on rank (\d+): (.*)$", text, re.M))
    seen = [f"{host}: {counts.get(str(index), '?')}" for index, host in enumerate(probed)]
    if all(counts.get(str(index)) == "None" for index in range(len(probed))):
        _say("info", "GPUs per host: not counted (cupy is not installed)")
        return
    _say("info", "GPUs per host (cupy): " + ", ".join(seen))
    if args.gpus_per_node is not None or args.oversubscribe_gpus:
        return  # the count was given, or sharing GPUs was asked for
    layout = _layout(plan)
    for index, host in enumerate(probed):
        gpus = counts.get(str(index), "")
        if gpus.isdigit() and 0 < int(gpus) < layout[host]:
            raise _Failed(
                f"host {host} would run {layout[host]} ranks but has {gpus} GPU(s); lower -np "
                f"or the slots, or pass --oversubscribe-gpus (or --gpus-per-node 0)"
            )


def _check_allreduce(args: argparse.Namespace, plan: Plan, python: str) -> None:
    host_names = [host.name for host in plan.hosts]
    probe = plan_here(_probe_args(args, host_names, python))
    transport = [
        f"{name}={probe.env[name]}"
        for name in probe.forwarded
        if name.startswith(_TRANSPORT_PREFIXES)
    ]
    _say("info", "transport settings: " + (" ".join(transport) or "none (MPI defaults)"))
    timeout = args.timeout or PROBE_TIMEOUT
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as output:
        code = run_supervised(probe.command, probe.env, timeout, args.grace, output)
        output.seek(0)
        text = output.read()
    seconds = time.monotonic() - started
    verdicts = [line for line in text.splitlines() if line.startswith("allreduce ")]
    if code != 0 or not verdicts or not verdicts[0].startswith("allreduce ok"):
        print(text.rstrip("\n"))
        why = "timed out" if code == 124 else f"exit status {code}"
        raise _Failed(f"2-rank allreduce probe failed ({why}; its output is above)")
    probed = host_names[:2] or [socket.gethostname()] * 2
    _say("ok", f"{verdicts[0]} on {', '.join(probed)} ({seconds:.1f} s)")
    _check_gpus(text, probed, plan, args)


def _job_without_command(args: argparse.Namespace) -> argparse.Namespace:
    """``--check`` needs no COMMAND; plan the job with a stand-in."""
    job = argparse.Namespace(**vars(args))
    job.command = [sys.executable, "-c", "pass"]
    return job


def run_check(args: argparse.Namespace) -> int:
    """Run the probes for the job described by ``args``; print a verdict; 0 if all passed."""
    print("distgrad-run --check", flush=True)
    try:
        plan = plan_here(args if args.command else _job_without_command(args))
        _say("ok", f"launcher: {FLAVOR_NAMES[plan.flavor]} at {plan.command[0]}")
        python = interpreter(args.command)
        _check_library(plan.flavor, python)
        if args.command:
            _check_distgrad(python)
        layout = _layout(plan)
        _say(
            "info",
            "ranks per host: "
            + (
                ", ".join(f"{host}: {count}" for host, count in layout.items()) or "placed by Slurm"
            ),
        )
        host_names = [host.name for host in plan.hosts]
        if host_names:
            _check_hosts(host_names)
        if args.iface:
            _check_iface(args.iface)
        _check_allreduce(args, plan, python)
    except (_Failed, LaunchError) as failure:
        print(f"distgrad-run --check: FAILED: {failure}", flush=True)
        return 1
    print("distgrad-run --check: OK", flush=True)
    return 0
