"""Run the job, and on a failure end it and start it again: ``--max-restarts K`` (torchrun's
name) and ``--min-np M``.

A relaunch runs the same command; the program resumes from its last committed checkpoint by
its own logic (``CheckpointManager.restore()``). Ranks get torchrun's
``TORCHELASTIC_RESTART_COUNT`` (0 on the first launch) and ``TORCHELASTIC_MAX_RESTARTS``.
Before each relaunch the host list is read again (``--hostfile`` re-read, so a file that
lost hosts or slots is seen); with ``--min-np M`` the job is relaunched on the slots left,
as long as there are at least M, else on the same number of ranks as before.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Mapping

from . import LaunchError
from .mpi_flavor import FLAVOR_NAMES
from .plan import Here, Plan, here, hosts_of, make_plan
from .supervise import JobResult, run_job

RESTART_COUNT_VAR = "TORCHELASTIC_RESTART_COUNT"
MAX_RESTARTS_VAR = "TORCHELASTIC_MAX_RESTARTS"


def _say(message: str) -> None:
    print(f"distgrad-run: {message}", file=sys.stderr, flush=True)


def failure_reason(result: JobResult) -> str:
    """What went wrong, for the final message and the restart log: the failed ranks as
    named by their wrappers, else the exit status alone."""
    if result.failures:
        return "; ".join(str(failure) for failure in result.failures)
    return f"the job exited with status {result.code} (no rank named a cause)"


def ranks_for_relaunch(args: argparse.Namespace, ranks: int | None, machine: Here) -> int | None:
    """How many ranks the next launch gets: as before, unless ``--min-np`` is given and the
    hosts (read again) have fewer slots; then the slots left. LaunchError below ``--min-np``."""
    if args.min_np is None or ranks is None:
        return ranks
    hosts = hosts_of(args)
    if not hosts:
        return ranks  # this machine: its slots do not go away
    slots = sum(host.slots for host in hosts)
    if slots >= ranks:
        return ranks
    if slots < args.min_np:
        raise LaunchError(
            f"only {slots} slot(s) left on {', '.join(h.spec for h in hosts)}, fewer than "
            f"--min-np {args.min_np}; not relaunching"
        )
    return slots


def _launch_args(args: argparse.Namespace, ranks: int | None, first: int | None):
    """``args`` for a launch on ``ranks`` ranks (the options as given when that is the
    first launch's count)."""
    if ranks is None or ranks == first:
        return args
    job = argparse.Namespace(**vars(args))
    job.np, job.nproc_per_node = ranks, None  # the count is explicit now
    return job


def run_with_restarts(
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    machine: Here | None = None,
    run: Callable[..., JobResult] = run_job,
) -> int:
    """Plan and run the job, relaunching it up to ``args.max_restarts`` times after a
    failure (not after --timeout or a signal to distgrad-run); return the exit status.
    Every restart is logged with its reason; a failed job ends with a message naming the
    failed ranks and how they ended."""
    environ = os.environ if environ is None else environ
    machine = machine or here()
    limit = args.max_restarts
    ranks: int | None = None
    first: int | None = None
    attempt = 0
    while True:
        env = {**environ, RESTART_COUNT_VAR: str(attempt), MAX_RESTARTS_VAR: str(limit)}
        plan: Plan = make_plan(_launch_args(args, ranks, first), env, machine)
        if ranks is None and plan.ranks is not None:
            ranks = first = len(plan.ranks)
        if args.verbose:
            _say(FLAVOR_NAMES[plan.flavor])
            _say(shlex.join(plan.command))
        result = run(plan.command, plan.env, args.timeout, args.grace)
        if result.code == 0:
            if attempt:
                _say(f"the job completed after {attempt} restart(s)")
            return 0
        reason = failure_reason(result)
        if result.stopped:
            return result.code
        if attempt >= limit:
            more = f" after {attempt} restart(s)" if limit else ""
            _say(f"the job failed with exit status {result.code}{more}: {reason}")
            return result.code
        try:
            next_ranks = ranks_for_relaunch(args, ranks, machine)
        except LaunchError as error:
            _say(f"the job failed with exit status {result.code}: {reason}")
            _say(str(error))
            return result.code
        attempt += 1
        fewer = f" (was {ranks}: --min-np {args.min_np})" if next_ranks != ranks else ""
        where = f" on {next_ranks} ranks{fewer}" if next_ranks is not None else ""
        _say(f"restart {attempt} of {limit}: {reason}; relaunching{where}")
        ranks = next_ranks
