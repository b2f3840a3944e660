"""Host lists: parse ``-H`` and hostfiles, check them, and place ranks on slots."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import LaunchError

_HOST_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.\-]+)?$")


@dataclass(frozen=True)
class Host:
    """A host, how many ranks it takes before it counts as oversubscribed (``slots``) and
    at most (``max_slots``, Open MPI hostfiles; None: no limit)."""

    name: str
    slots: int
    max_slots: int | None = None

    @property
    def spec(self) -> str:
        """``name:slots`` for mpiexec, with an IPv6 address in brackets."""
        name = f"[{self.name}]" if ":" in self.name else self.name
        return f"{name}:{self.slots}"


def _slots(text: str, where: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise LaunchError(f"{where}: slots must be a whole number >= 1, got {text!r}")
    return int(text)


def _host(name: str, where: str) -> str:
    if _HOST_NAME.match(name) or (":" in name and _IPV6.match(name)):
        return name
    raise LaunchError(
        f"{where}: {name!r} is not a host name, IPv4 address or IPv6 address "
        f"(write IPv6 with slots as [addr]:N)"
    )


def _split_slots(item: str) -> tuple[str, str, str]:
    """``(name, ':' or '', slots)`` of ``host``, ``host:N``, ``[ipv6]``, ``[ipv6]:N`` or a
    bare IPv6 address (which takes no ``:N``)."""
    if item.startswith("["):
        name, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return item, "", ""  # rejected by _host
        return name, rest[:1], rest[1:]
    if item.count(":") > 1:
        return item, "", ""
    return item.partition(":")


def _unique(hosts: list[Host], where: str) -> list[Host]:
    seen: set[str] = set()
    for host in hosts:
        if host.name in seen:
            raise LaunchError(
                f"{where}: host {host.name!r} is listed twice; list it once with "
                f"the total number of slots (e.g. {host.name}:2)"
            )
        seen.add(host.name)
    return hosts


def parse_host_list(spec: str) -> list[Host]:
    """Parse ``-H`` text: comma-separated ``host`` or ``host:slots`` (1 slot by default)."""
    hosts = []
    for item in spec.split(","):
        where = f"-H {spec!r}"
        name, sep, slots = _split_slots(item.strip())
        if not name:
            raise LaunchError(f"{where}: empty host name (stray comma?)")
        hosts.append(Host(_host(name, where), _slots(slots, where) if sep else 1))
    return _unique(hosts, f"-H {spec!r}")


def parse_hostfile_text(text: str, source: str = "hostfile") -> list[Host]:
    """Parse hostfile text in either format, one host per line.

    MPICH style ``host`` / ``host:slots`` and Open MPI style ``host slots=N
    [max_slots=M]`` are both accepted (IPv6 addresses bare or as ``[addr]:N``); ``#``
    starts a comment, blank lines are ignored.
    """
    hosts = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source} line {number} ({raw.strip()!r})"
        first, *fields = line.split()
        name, sep, slots = _split_slots(first)
        count = _slots(slots, where) if sep else 1
        limit = None
        for field in fields:
            key, eq, value = field.partition("=")
            if key == "max_slots" and eq:
                limit = _slots(value, where)
                continue
            if key != "slots" or not eq or sep:
                raise LaunchError(
                    f"{where}: unexpected {field!r}; write 'host', 'host:N' or "
                    f"'host slots=N [max_slots=M]'"
                )
            count = _slots(value, where)
        if limit is not None and limit < count:
            raise LaunchError(f"{where}: max_slots={limit} is less than slots={count}")
        hosts.append(Host(_host(name, where), count, limit))
    if not hosts:
        raise LaunchError(f"{source}: no hosts in it (only blank lines or comments)")
    return _unique(hosts, source)


def parse_hostfile(path: str) -> list[Host]:
    """Read and parse a hostfile (see :func:`parse_hostfile_text`)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise LaunchError(f"cannot read hostfile {path!r}: {error.strerror}") from None
    return parse_hostfile_text(text, source=path)


def describe_slots(hosts: list[Host]) -> str:
    """``'n1: 2, n2: 2'`` for messages."""
    return ", ".join(f"{host.name}: {host.slots}" for host in hosts)


def place_ranks(hosts: list[Host], nprocs: int, oversubscribe: bool) -> list[str]:
    """Host name of each rank, filling each host's slots in order (as hydra and
    Open MPI do by default) and wrapping around when oversubscribing.

    Raises LaunchError when ``nprocs`` exceeds the slots and ``oversubscribe`` is off.
    """
    if nprocs < 1:
        raise LaunchError(f"-np must be at least 1, got {nprocs}")
    total = sum(host.slots for host in hosts)
    if nprocs > total and not oversubscribe:
        raise LaunchError(
            f"-np {nprocs} is more than the {total} slots available "
            f"({describe_slots(hosts)}). Lower -np, give hosts more slots "
            f"(-H host:N or 'host slots=N' in the hostfile), or pass --oversubscribe "
            f"to run more ranks than slots."
        )
    order = [host.name for host in hosts for _ in range(host.slots)]
    placed = [order[rank % total] for rank in range(nprocs)]
    for host in hosts:
        if host.max_slots is not None and placed.count(host.name) > host.max_slots:
            raise LaunchError(
                f"-np {nprocs} would put {placed.count(host.name)} ranks on {host.name}, "
                f"more than its max_slots={host.max_slots}. Lower -np or raise max_slots."
            )
    return placed
