"""Multi-node over a real network: two "hosts" made of Linux network namespaces.

Each host is a network namespace with one end of a veth pair (both ends are named
``dgveth``, so the same ``--iface`` works on both). An ssh stand-in, handed to hydra
with ``--ssh``, runs the remote proxy in the other namespace with a fresh login-like
environment, so only the launcher's allow-list reaches the remote ranks. Both
namespaces share this machine's hostname, /dev/shm and cores: MPI must be told to use
TCP (UCX_TLS=tcp,self with the veth and loopback as devices, or the OFI netmod with
FI_PROVIDER=tcp), else UCX sees one machine and uses shared memory; the tests check
the veth byte counters to prove the data really crossed the link. The main test trains
the data-parallel example with one rank per host and compares the result with the same
training on 2 ranks of one host (the ``reference_training`` fixture).

Needs root and iproute2; skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from launcher_testing import (
    PROGRAMS,
    Training,
    distgrad_run,
    kill_launcher,
    launcher_env,
    needs_mpi,
    pids_with,
    training_command,
)

pytestmark = needs_mpi
IFACE = "dgveth"
ADDRESSES = ("10.231.7.1", "10.231.7.2")
#: Environments that force MPICH's traffic between the two namespaces onto TCP.
TRANSPORTS = {
    "ucx-tcp": {"UCX_TLS": "tcp,self", "UCX_NET_DEVICES": f"{IFACE},lo"},
    "ofi-tcp": {"MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"},
}


@dataclass(frozen=True)
class TwoHosts:
    namespaces: tuple[str, str]
    addresses: tuple[str, str]
    ssh: str  # the ssh stand-in

    def tx_bytes(self) -> list[int]:
        """Bytes sent so far by each host's end of the veth pair."""
        return [
            int(_ip("netns", "exec", ns, "cat", f"/sys/class/net/{IFACE}/statistics/tx_bytes"))
            for ns in self.namespaces
        ]

    def options(self, slots: int = 2) -> list[str]:
        """distgrad-run's options for ``slots`` ranks per host, reaching the second through
        --ssh."""
        hosts = ",".join(f"{address}:{slots}" for address in self.addresses)
        return ["-H", hosts, "--iface", IFACE, "--ssh", self.ssh]

    def run(self, args: list[str], env: dict[str, str], timeout: int = 40, slots: int = 2):
        """distgrad-run ARGS with ``slots`` ranks per host and ``--timeout``, started on the
        first host and reaching the second through --ssh."""
        return distgrad_run(
            [*self.options(slots), "--timeout", str(timeout), "--grace", "2", *args],
            env=env,
            timeout=timeout + 20,
            prefix=("ip", "netns", "exec", self.namespaces[0]),
        )


def _ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=20, check=True
    ).stdout


def _wait_for_carrier(namespaces: tuple[str, str], seconds: float = 10) -> None:
    """Wait until both veth ends are operationally up (UCX ignores them before that)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states = [
            _ip("netns", "exec", ns, "cat", f"/sys/class/net/{IFACE}/operstate").strip()
            for ns in namespaces
        ]
        if states == ["up", "up"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"veth pair not up after {seconds} s: {states}")


def _teardown(namespaces: list[str]) -> None:
    """Kill every process left in the namespaces (by pid), then delete them."""
    for ns in namespaces:
        pids = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=20, check=False
        ).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)


@pytest.fixture
def two_hosts(request, tmp_path):
    """Two network namespaces joined by a veth pair, and an ssh stand-in between them."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 ('ip') to create network namespaces")
    tag = uuid.uuid4().hex[:6]
    namespaces = (f"dg{tag}a", f"dg{tag}b")
    created: list[str] = []
    request.addfinalizer(lambda: _teardown(created))  # runs even if the setup below fails
    try:
        for ns in namespaces:
            _ip("netns", "add", ns)
            created.append(ns)
            # No IPv6: a fresh link's tentative IPv6 address makes libfabric's tcp provider fail.
            _ip(
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            )
        _ip(
            "link",
            "add",
            "name",
            IFACE,
            "netns",
            namespaces[0],
            "type",
            "veth",
            "peer",
            "name",
            IFACE,
            "netns",
            namespaces[1],
        )
        for ns, address in zip(namespaces, ADDRESSES):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", IFACE)
            _ip("-n", ns, "link", "set", IFACE, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot create network namespaces: {error.stderr.strip()}")
    _wait_for_carrier(namespaces)
    ssh = tmp_path / "ssh-to-netns"
    ssh.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        # ssh stand-in: [OPTIONS] HOST COMMAND -> COMMAND in HOST's network namespace,
        # from a fresh environment as a login over ssh would have.
        while [ "${{1#-}}" != "$1" ]; do shift; done
        host=$1; shift
        case "$host" in
            {ADDRESSES[0]}) ns={namespaces[0]} ;;
            {ADDRESSES[1]}) ns={namespaces[1]} ;;
            *) echo "ssh stand-in: unknown host $host" >&2; exit 255 ;;
        esac
        exec {shutil.which("ip")} netns exec "$ns" env -i HOME="$HOME" PATH=/usr/bin:/bin sh -c "$*"
        """)
    )
    ssh.chmod(0o755)
    return TwoHosts(namespaces, ADDRESSES, str(ssh))


@dataclass(frozen=True)
class Job:
    """A program for the two hosts and how to judge its output."""

    command: list[str]
    slots: int  # ranks per host
    min_network_bytes: int  # each host must send at least this much over the veth
    verify: Callable[[str], None]


@pytest.fixture
def job_on_two_hosts(reference_training, tmp_path) -> Job:
    """What the multi-node test runs: the training example, one rank per host. It must
    end with the same loss, accuracy and parameters as on 2 ranks of one host, and each
    host must have sent at least the gradients (parameters x 4 bytes x steps)."""
    out = tmp_path / "run"

    def verify(output: str) -> None:
        Training.read(output, out).assert_same_as(reference_training)

    return Job(training_command(out), 1, reference_training.gradient_bytes, verify)


def test_job_spans_two_hosts_over_the_network(two_hosts, job_on_two_hosts):
    before = two_hosts.tx_bytes()
    result = two_hosts.run(
        job_on_two_hosts.command,
        launcher_env(**TRANSPORTS["ucx-tcp"]),
        slots=job_on_two_hosts.slots,
    )
    sent = [after - start for after, start in zip(two_hosts.tx_bytes(), before)]
    assert result.returncode == 0, result.stdout + result.stderr
    job_on_two_hosts.verify(result.stdout)
    assert min(sent) >= job_on_two_hosts.min_network_bytes, f"veth tx bytes per host: {sent}"


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_ranks_fill_both_hosts(two_hosts, transport):
    count = 1 << 20  # 8 MiB of doubles per rank
    before = two_hosts.tx_bytes()
    result = two_hosts.run(
        [sys.executable, str(PROGRAMS / "allreduce.py"), str(count)],
        launcher_env(**TRANSPORTS[transport]),
    )
    sent = [after - start for after, start in zip(two_hosts.tx_bytes(), before)]
    assert result.returncode == 0, result.stdout + result.stderr
    lines = sorted(re.findall(r"^rank \d+/4 .*$", result.stdout, re.M))
    assert len(lines) == 4, result.stdout
    for rank, line in enumerate(lines):  # launcher and MPI agree on who shares a host
        local = rank % 2
        assert line.startswith(f"rank {rank}/4 local {local}/2 mpi-local {local}/2 "), line
        assert line.endswith("allreduce ok 10"), line
    assert min(sent) >= count * 8, f"veth tx bytes per host: {sent}"


def test_check_across_two_hosts(two_hosts):
    result = two_hosts.run(["--check"], launcher_env(**TRANSPORTS["ucx-tcp"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "allreduce ok: 2 ranks" in result.stdout
    assert result.stdout.splitlines()[-1] == "distgrad-run --check: OK"


def test_remote_failure_ends_the_job_on_both_hosts(two_hosts, token):
    args = [sys.executable, str(PROGRAMS / "misbehave.py"), "raise", "3", token]  # on host 2
    result = two_hosts.run(args, launcher_env(**TRANSPORTS["ucx-tcp"]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[rank 3] RuntimeError: rank 3 fails on purpose" in result.stderr
    # (no bound on the time: the job ended by itself, not by --timeout, and left nothing)
    assert "timeout" not in result.stderr
    assert pids_with(token) == []


def test_timeout_stops_ranks_on_both_hosts(two_hosts, token):
    args = [sys.executable, str(PROGRAMS / "misbehave.py"), "hang", "0", token]
    result = two_hosts.run(args, launcher_env(**TRANSPORTS["ucx-tcp"]), timeout=3)
    assert result.returncode == 124, result.stdout + result.stderr
    assert result.stdout.count("ready") == 4, result.stdout
    assert "distgrad-run: timeout: job still running after 3 s; stopping it" in result.stderr
    # (no bound on the time: the team asserts outcomes; the subprocess timeout bounds the run)
    assert pids_with(token) == []


def test_sigkill_to_the_launcher_ends_the_job_on_both_hosts(two_hosts, token):
    """distgrad-run SIGKILLed: its mpiexec dies with it; the proxy on each host loses its
    connection to mpiexec and ends its ranks (the remote side through the MPI process
    manager's own teardown, not a signal from here); 0 processes left 2 s later, 10 of 10."""
    args = [
        *two_hosts.options(slots=1),
        sys.executable,
        str(PROGRAMS / "misbehave.py"),
        "hang",
        "0",
        token,
    ]
    env = launcher_env(**TRANSPORTS["ucx-tcp"])
    prefix = ("ip", "netns", "exec", two_hosts.namespaces[0])
    for attempt in range(10):
        job, left = kill_launcher(args, ready=2, env=env, prefix=prefix)
        assert len(job) >= 5, f"try {attempt}: too few processes found: {job}"
        assert left == [], f"try {attempt}: still running 2 s after the SIGKILL: {left}"
    assert pids_with(token) == []
