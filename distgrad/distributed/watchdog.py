"""The hang watchdog: when a collective misses its deadline, report what every rank was doing.

Each rank keeps, at no cost beyond a few attribute writes per collective, its number of issued
collectives, its last completed collective and the ones in flight (``Communicator``). On a
missed deadline the rank that noticed it (the *reporter*):

1. writes its own state to ``<dir>/rank-<r>.json`` and creates ``<dir>/trigger``;
2. every other rank has a daemon thread polling for ``trigger`` (every ``POLL_S`` seconds, a
   ``stat``), which writes that rank's state, including where its main thread is, even while
   the main thread is stuck in user code (a rank blocked in C code that holds the GIL, or a dead
   rank, cannot answer);
3. the reporter waits up to ``GRACE_S`` seconds for the states, writes ``<dir>/report.json``
   (every rank's state, ``null`` for a rank that did not answer, and a verdict), prints a
   readable summary on stderr, and the ``CollectiveTimeoutError`` takes the job down
   (``MPI_Abort`` from the uncaught-exception hook, or at exit if the error is swallowed).

``<dir>`` is ``$DISTGRAD_WATCHDOG_DIR/distgrad-watchdog-<job>`` (default base: the system's
temporary directory), ``<job>`` an id rank 0 makes at ``init()``. Ranks on other nodes see the
trigger only if ``DISTGRAD_WATCHDOG_DIR`` is on a shared file system; otherwise the report
holds the ranks of the reporter's node and names the others as not answering.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .communicator import CollectiveInfo, Communicator

__all__ = ["Watchdog", "WATCHDOG_DIR_ENV", "POLL_S", "GRACE_S"]

WATCHDOG_DIR_ENV = "DISTGRAD_WATCHDOG_DIR"
POLL_S = 0.2
GRACE_S = 2.0
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _info_dict(info: CollectiveInfo, labels: dict[int, str]) -> dict[str, Any]:
    entry = {
        "seq": info.seq,
        "op": info.op,
        "count": info.count,
        "dtype": None if info.dtype is None else str(info.dtype),
        "bytes": info.nbytes,
        "root": info.root,
        "reduce_op": None if info.reduce_op is None else info.reduce_op.name,
        "describe": info.describe().rsplit(" on rank", 1)[0],
    }
    if info.seq in labels:
        entry["label"] = labels[info.seq]
    return entry


def _where(frame: FrameType, limit: int = 4) -> list[str]:
    """The innermost ``limit`` frames of a stack outside distgrad.distributed, as text."""
    frames = [
        f
        for f in traceback.extract_stack(frame)
        if not os.path.abspath(f.filename).startswith(_PACKAGE)
    ]
    return [
        f"{f.filename}:{f.lineno} in {f.name}" + (f": {f.line}" if f.line else "")
        for f in frames[-limit:]
    ]


class Watchdog:
    """One per process (``init()`` makes it for a world of more than one rank). ``watch(comm)``
    puts a communicator under it; ``add_source(fn)`` adds ``fn() -> (name, dict, labels)`` to
    each state (``labels``: ``{seq: text}`` naming collectives, e.g. DataParallel buckets)."""

    def __init__(self, rank: int, world_size: int, job: str, base: str | None = None):
        self.rank, self.world_size, self.job = rank, world_size, job
        base = base or os.environ.get(WATCHDOG_DIR_ENV) or tempfile.gettempdir()
        self.dir = os.path.join(base, f"distgrad-watchdog-{job}")
        # A base that exists now is never re-created later: a rank still running after its job
        # ended (and its scratch directory was removed) must not bring the directory back.
        self._base, self._make_base = base, not os.path.isdir(base)
        self.trigger = os.path.join(self.dir, "trigger")
        self.comms: list[Communicator] = []
        # weak references to bound methods returning (name, state, {seq: label})
        self._sources: list[weakref.WeakMethod[Callable[[], tuple[str, Any, dict[int, str]]]]] = []
        self._answered = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="distgrad-watchdog", daemon=True)
        self._thread.start()

    def watch(self, comm: Communicator) -> None:
        comm.watchdog = self
        self.comms.append(comm)

    def add_source(self, method: Callable[[], tuple[str, Any, dict[int, str]]]) -> None:
        """``method``: a bound method (held weakly: its object may go away)."""
        self._sources.append(weakref.WeakMethod(method))

    def stop(self) -> None:
        self._stop.set()

    # ---- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """This rank's collectives and where its main thread is."""
        labels: dict[int, str] = {}
        context: dict[str, Any] = {}
        for ref in list(self._sources):
            method = ref()
            if method is not None:
                name, data, more = method()
                context[name] = data
                labels.update(more)
        comms = []
        for comm in self.comms:
            pending = [w.info for w in list(comm.in_flight.values())]
            if comm.blocking is not None:
                pending.append(comm.blocking())
            done = comm.last_done
            last = None if done is None else done()
            comms.append(
                {
                    "kind": comm.kind,
                    "issued": comm.seq,
                    "last_completed": None if last is None else _info_dict(last, labels),
                    "pending": [
                        _info_dict(i, labels) for i in sorted(pending, key=lambda i: i.seq)
                    ],
                    "failure": comm.failure,
                }
            )
        main = threading.main_thread().ident
        frame = None if main is None else sys._current_frames().get(main)
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
            "communicators": comms,
            "where": _where(frame) if frame is not None else [],
            "context": context,
        }

    def _write(self, name: str, data: dict[str, Any]) -> str:
        if self._make_base:
            os.makedirs(self._base, exist_ok=True)
        try:
            os.mkdir(self.dir)
        except FileExistsError:
            pass
        path = os.path.join(self.dir, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
        return path

    def _answer(self) -> None:
        if not self._answered:
            self._answered = True
            self._write(f"rank-{self.rank}.json", self.state())

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            if os.path.exists(self.trigger):
                try:
                    self._answer()
                except Exception:  # a watchdog must never take a healthy rank down
                    pass
                return

    # ---- the report --------------------------------------------------------------------------
    def report(self, comm: Communicator, info: CollectiveInfo, waited: float) -> str:
        """Called by the rank whose collective ``info`` on ``comm`` missed its deadline (after
        marking ``comm`` broken): write its state; if no other rank has started a report,
        collect every rank's, write ``report.json`` and print the summary. Return the report's
        path."""
        self._answer()
        path = os.path.join(self.dir, "report.json")
        try:
            os.close(os.open(self.trigger, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:  # another rank reports: let it finish before we abort
            _wait_for([path], GRACE_S + 1.0)
            return f"{path} (written by the rank that noticed first)"
        paths = [os.path.join(self.dir, f"rank-{r}.json") for r in range(self.world_size)]
        _wait_for(paths, GRACE_S)
        ranks: dict[str, Any] = {}  # rank (a JSON key) -> its state, None: no answer
        for r, state_path in enumerate(paths):
            try:
                with open(state_path) as f:
                    ranks[str(r)] = json.load(f)
            except (OSError, ValueError):
                ranks[str(r)] = None
        verdict = _verdict(comm.kind, info, ranks)
        report = {
            "job": self.job,
            "reporter": self.rank,
            "deadline_s": comm.timeout,
            "waited_s": round(waited, 3),
            "timed_out": _info_dict(info, {}) | {"kind": comm.kind},
            "verdict": verdict,
            "ranks": ranks,
        }
        self._write("report.json", report)
        sys.stderr.write(
            "".join(
                f"[rank {self.rank}] {line}\n"
                for line in _summary(info, comm.timeout, ranks, verdict, path)
            )
        )
        sys.stderr.flush()
        return path


def _wait_for(paths: list[str], seconds: float) -> None:
    """Return once every path exists, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(map(os.path.exists, paths)):
        time.sleep(0.05)


def _comm_line(comm: dict[str, Any]) -> str:
    last = comm["last_completed"]
    text = f"{comm['kind']}: issued {comm['issued']}, last completed " + (
        f"#{last['seq']} {last['op']}" if last else "none"
    )
    if comm["pending"]:
        text += "; pending " + ", ".join(
            p["describe"] + (f" [{p['label']}]" if "label" in p else "") for p in comm["pending"]
        )
    else:
        text += "; nothing pending"
    return text


def _summary(
    info: CollectiveInfo, timeout: float, ranks: dict[str, Any], verdict: str, path: str
) -> list[str]:
    lines = [
        f"distgrad watchdog: {info.describe()} missed its deadline ({timeout:g} s). "
        f"Every rank's state, written to {path}:"
    ]
    for r, state in ranks.items():
        if state is None:
            lines.append(
                f"  rank {r}: no answer within {GRACE_S:g} s (exited, killed, on "
                f"another node without a shared {WATCHDOG_DIR_ENV}, or blocked outside "
                f"Python)"
            )
            continue
        lines.append(
            f"  rank {r} ({state['host']}, pid {state['pid']}): "
            + " | ".join(_comm_line(c) for c in state["communicators"])
        )
        if state["where"]:
            lines.append(f"    at {state['where'][-1]}")
    lines.append(f"  verdict: {verdict}")
    return lines


def _verdict(kind: str, info: CollectiveInfo, ranks: dict[str, Any]) -> str:
    """Which ranks are behind the collective that timed out (on a ``kind`` communicator)."""
    behind: list[str] = []
    silent: list[str] = []
    for r, state in ranks.items():
        if state is None:
            silent.append(r)
            continue
        issued = max((c["issued"] for c in state["communicators"] if c["kind"] == kind), default=0)
        if issued < info.seq:
            behind.append(f"rank {r} has issued {issued} collectives and not reached #{info.seq}")
    if behind:
        return "; ".join(behind) + " (it is stuck or slow outside collectives)"
    if silent:
        return (
            f"rank(s) {', '.join(silent)} did not answer: exited (its program ended, e.g. "
            f"it had fewer batches, or it was killed) or blocked"
        )
    return (
        f"every rank has issued collective #{info.seq}: they issued different collectives "
        f"or sizes, or one is stuck inside one; run with DISTGRAD_DEBUG=1 to check each "
        f"collective"
    )
