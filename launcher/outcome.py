"""Which ranks failed and how, read from the job's stderr: the lines the per-rank wrapper
(``rank_main``) writes for a rank killed by a signal or exiting without a Python exception,
and those it writes when a rank's uncaught exception or ``sys.exit`` aborts the job."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: ``rank_main.failure_text``: ``distgrad-run: rank R (pid P on HOST) was killed by signal
#: NAME (N)`` or ``... exited with status S[ without a Python exception]``.
_ENDED = re.compile(
    r"distgrad-run: rank (?P<rank>\d+) \(pid (?P<pid>\d+) on (?P<host>[^)]*)\) "
    r"(?P<how>was killed by signal \S+ \(\d+\)|exited with status -?\d+"
    r"(?: without a Python exception)?)"
)
#: ``failure.die``: ``[rank R] uncaught exception: aborting all N ranks`` (or ``exit: ...``).
_ABORTED = re.compile(r"\[rank (?P<rank>\d+)\] (?P<reason>uncaught exception|exit): aborting all")


@dataclass(frozen=True)
class RankFailure:
    """One failed rank: its number and what happened (``was killed by signal SIGKILL (9)``,
    ``exited with status 3 without a Python exception``, ``raised an uncaught exception``),
    with its pid and host when the wrapper named them."""

    rank: int
    how: str
    pid: int | None = None
    host: str | None = None

    def __str__(self) -> str:
        where = f" (pid {self.pid} on {self.host})" if self.pid is not None else ""
        return f"rank {self.rank}{where} {self.how}"


class FailureScanner:
    """Reads a job's stderr in chunks (lines may be split between them) and collects the
    first failure reported for each rank, in the order they were reported."""

    def __init__(self) -> None:
        self._partial = b""
        self._found: dict[int, RankFailure] = {}

    def feed(self, chunk: bytes) -> None:
        """Scan the complete lines in ``chunk`` (with what is left of the previous one)."""
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()[-4096:]
        for line in lines:
            self._scan(line.decode(errors="replace"))

    def _scan(self, line: str) -> None:
        ended = _ENDED.search(line)
        if ended:
            rank = int(ended["rank"])
            self._found.setdefault(
                rank, RankFailure(rank, ended["how"], int(ended["pid"]), ended["host"])
            )
            return
        aborted = _ABORTED.search(line)
        if aborted:
            rank = int(aborted["rank"])
            how = (
                "raised an uncaught exception"
                if aborted["reason"] == "uncaught exception"
                else "called sys.exit with an error status"
            )
            self._found.setdefault(rank, RankFailure(rank, how))

    def failures(self) -> list[RankFailure]:
        """The failed ranks seen so far (the last, unterminated line included)."""
        if self._partial:
            self._scan(self._partial.decode(errors="replace"))
            self._partial = b""
        return list(self._found.values())
