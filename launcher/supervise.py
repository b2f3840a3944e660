"""Run the launcher command under supervision: own process group, timeout, signals,
exit-code propagation, and no processes left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import IO

from . import LaunchError

#: Exit status after ``--timeout`` expired (as coreutils ``timeout``).
TIMEOUT_EXIT = 124


class _Stop(Exception):
    """Raised from a signal handler: SIGINT, SIGTERM or SIGHUP reached distgrad-run."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def _say(message: str) -> None:
    print(f"distgrad-run: {message}", file=sys.stderr, flush=True)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the job's process group (mpiexec forwards it to all ranks, remote ones
    included), then SIGKILL the group if it has not exited after ``grace`` seconds."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _say(f"job still running {grace:g} s after SIGTERM; sending SIGKILL")
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def run_supervised(
    command: list[str],
    env: Mapping[str, str],
    timeout: float | None = None,
    grace: float = 5.0,
    output: IO | None = None,
) -> int:
    """Run ``command`` in a new session and return the exit status to report.

    That is the launcher's own status (mpiexec reports the failing rank's code),
    128+N when it died of signal N, 124 after ``timeout`` seconds, or 128+N when
    distgrad-run itself got SIGINT/SIGTERM/SIGHUP. In the last two cases the whole
    process group is stopped first; leftovers of the group are always killed.
    Its stdout and stderr go to the file ``output`` when given, else to ours.
    """
    try:
        proc = subprocess.Popen(
            command,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
    except OSError as error:
        raise LaunchError(f"cannot start {command[0]}: {error.strerror}") from None
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, _raise_stop) for signum in handled}
    try:
        status = proc.wait(timeout=timeout)
        code = 128 - status if status < 0 else status
    except (subprocess.TimeoutExpired, _Stop) as reason:
        for signum in handled:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        if isinstance(reason, _Stop):
            _say(f"got {signal.Signals(reason.signum).name}; stopping the job")
            code = 128 + reason.signum
        else:
            _say(f"timeout: job still running after {timeout:g} s; stopping it")
            code = TIMEOUT_EXIT
        _stop_group(proc, grace)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _signal_group(proc.pid, signal.SIGKILL)  # orphans a crashed mpiexec left behind
    return code
