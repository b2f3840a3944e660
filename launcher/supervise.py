"""Run the launcher command under supervision: own process group, timeout, signals,
exit-code propagation, the failing ranks' names, and no processes or shared-memory files
left behind, even when distgrad-run itself is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

from . import LaunchError
from .outcome import FailureScanner, RankFailure
from .shm import remove_stale_segments

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


def _die_with(parent: int, signum: int):
    """A ``preexec_fn``: the job's process manager gets ``signum`` when distgrad-run dies,
    however it dies (Linux ``PR_SET_PDEATHSIG``); a parent already gone ends it at once."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(128 + signum)

    return preexec


def death_signal(command: list[str]) -> int:
    """The signal the job's starter gets when distgrad-run dies. SIGKILL for mpiexec: hydra's
    and Open MPI's proxies, local and remote, see their control connection drop and kill their
    ranks (and every rank dies with its proxy, ``rank_main.die_with_parent``). SIGTERM for
    srun, which then cancels the step on every node (a killed srun would leave it running)."""
    return signal.SIGTERM if os.path.basename(command[0]) == "srun" else signal.SIGKILL


def _relay(source: IO[bytes], sink: IO[bytes], scanner: FailureScanner) -> None:
    """Copy the job's stderr to ours as it comes (partial lines included: progress bars),
    and let ``scanner`` read it."""
    fd = source.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        try:
            sink.write(chunk)
            sink.flush()
        except (OSError, ValueError):
            pass
        scanner.feed(chunk)
    source.close()


@dataclass
class JobResult:
    """How a job ended: the status to report, why, and the ranks named as failed."""

    code: int
    stopped: bool = False  # distgrad-run stopped it (a signal to it, or --timeout)
    failures: list[RankFailure] = field(default_factory=list)


def run_job(
    command: list[str],
    env: Mapping[str, str],
    timeout: float | None = None,
    grace: float = 5.0,
    output: IO | None = None,
) -> JobResult:
    """Run ``command`` in a new session and return how it ended (see :func:`run_supervised`).

    The job's stderr passes through distgrad-run (when ``output`` is None), which reads the
    lines ``rank_main`` writes for a rank killed by a signal or exiting without a Python
    exception. After a failed job, MPI shared-memory files it left in ``/dev/shm`` here are
    removed (:func:`.shm.remove_stale_segments`)."""
    scanner = FailureScanner()
    started = time.time()
    try:
        proc = subprocess.Popen(
            command,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT if output else subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid(), death_signal(command)),
        )
    except OSError as error:
        raise LaunchError(f"cannot start {command[0]}: {error.strerror}") from None
    relay = None
    if proc.stderr is not None:
        relay = threading.Thread(
            target=_relay, args=(proc.stderr, sys.stderr.buffer, scanner), daemon=True
        )
        relay.start()
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, _raise_stop) for signum in handled}
    stopped = False
    try:
        status = proc.wait(timeout=timeout)
        code = 128 - status if status < 0 else status
    except (subprocess.TimeoutExpired, _Stop) as reason:
        for signum in handled:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        stopped = True
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
    if relay is not None:
        relay.join(timeout=2)  # a leftover process could hold the pipe open
    if code != 0:
        remove_stale_segments(since=started)
    return JobResult(code, stopped, scanner.failures())


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
    process group is stopped first; leftovers of the group are always killed. Should
    distgrad-run die without that chance (SIGKILL), the job's starter is killed by the
    kernel and takes the ranks with it (:func:`death_signal`).
    Its stdout and stderr go to the file ``output`` when given, else to ours.
    """
    return run_job(command, env, timeout, grace, output).code
