"""Hierarchical allreduce: reduce-scatter within each node, allreduce across nodes among the
ranks with the same local rank, all-gather within the node (Horovod's
``HOROVOD_HIERARCHICAL_ALLREDUCE``, NCCL's tree/ring split by node).

With L ranks per node and N nodes, an array of n elements (padded to L*c, c = ceil(n / L)) costs,
in ``traffic.py``'s accounting, a reduce-scatter of L*c elements and an all-gather of L*c inside
the node, and an allreduce of c elements (2c counted) across nodes: only 1/L of the data
crosses the slower inter-node links (``hierarchical_bytes``).

Nodes: ranks with the same host name, in rank order (all nodes must hold as many ranks, the
ranks of a node need not be contiguous); ``ranks_per_node`` or ``DISTGRAD_FAKE_NODES=k``
(k nodes of world/k consecutive ranks) force a grouping, e.g. to test on one host.
``hierarchical_wanted`` decides whether DistributedDataParallel uses it:
``DISTGRAD_HIERARCHICAL_ALLREDUCE=0/1``, else when the world spans more than one node.

The three stages of one array run one after another, each started when the previous has
completed, while other arrays' stages run too. Each stage has a communicator of its own
(reduce-scatter and all-gather use two groups of the same ranks) and an array enters a stage
only after every array started before it has, so every communicator sees its collectives in
the same order on every rank whatever the timing.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..autograd import Tensor
from .communicator import Array, Communicator, ReduceOp, Work, started
from .groups import ProcessGroup

__all__ = [
    "HierarchicalAllreduce",
    "all_reduce",
    "node_layout",
    "hierarchical_wanted",
    "hierarchical_bytes",
]

_DONE = 3


def node_layout(comm: Communicator, ranks_per_node: int | None = None) -> list[list[int]]:
    """The world ranks of each node (a list of lists, in rank order), for the world
    communicator ``comm``: ``ranks_per_node`` consecutive ranks each if given, else
    ``DISTGRAD_FAKE_NODES`` nodes of equal size if set, else by host name (collective: every
    rank calls it)."""
    world = comm.world_size
    fake = os.environ.get("DISTGRAD_FAKE_NODES")
    if ranks_per_node is None and fake:
        nodes = int(fake)
        if nodes < 1 or world % nodes:
            raise ValueError(
                f"DISTGRAD_FAKE_NODES={fake}: the world of {world} ranks cannot be split into "
                f"{fake} nodes of equal size"
            )
        ranks_per_node = world // nodes
    if ranks_per_node is not None:
        if ranks_per_node < 1 or world % ranks_per_node:
            raise ValueError(
                f"ranks_per_node={ranks_per_node} does not divide the world of {world} ranks"
            )
        return [list(range(s, s + ranks_per_node)) for s in range(0, world, ranks_per_node)]
    hosts = comm.allgather_object(socket.gethostname())
    order: dict[str, list[int]] = {}
    for r, host in enumerate(hosts):
        order.setdefault(host, []).append(r)
    return list(order.values())


def hierarchical_wanted(nodes: Sequence[Sequence[int]], setting: bool | None = None) -> bool:
    """Whether to reduce hierarchically over ``nodes``: ``setting`` if not None, else
    ``DISTGRAD_HIERARCHICAL_ALLREDUCE`` (0/1) if set, else when there is more than one node
    holding more than one rank each. Never when the nodes differ in size or either level has
    a single member (it would only add steps)."""
    possible = len(nodes) > 1 and len(nodes[0]) > 1 and len({len(n) for n in nodes}) == 1
    if setting is None:
        env = os.environ.get("DISTGRAD_HIERARCHICAL_ALLREDUCE", "").strip()
        if env not in ("", "0", "1"):
            raise ValueError(f"DISTGRAD_HIERARCHICAL_ALLREDUCE must be 0 or 1, got {env!r}")
        setting = None if env == "" else env == "1"
    return possible if setting is None else bool(setting) and possible


def hierarchical_bytes(numel: int, itemsize: int, ranks_per_node: int) -> dict[str, int]:
    """Bytes one rank's hierarchical allreduce of ``numel`` elements counts at each level
    (``traffic.py``'s accounting): ``{"intra": reduce-scatter + all-gather, "inter":
    allreduce, "total": ...}``."""
    chunk = -(-numel // ranks_per_node)
    intra = 2 * ranks_per_node * chunk * itemsize
    inter = 2 * chunk * itemsize
    return {"intra": intra, "inter": inter, "total": intra + inter}


class HierarchicalAllreduce:
    """Allreduce (sum) over the world in three stages on process groups of ``nodes`` (world
    ranks per node, equal sizes). Creating it creates the groups: every rank of the world
    creates it, with the same ``nodes``. ``allreduce(array)`` starts summing ``array`` in
    place and returns a handle (``is_completed()``, ``wait()``), as a communicator's does."""

    def __init__(self, nodes: Sequence[Sequence[int]]):
        from .groups import new_group
        from .process_group import rank

        sizes = {len(n) for n in nodes}
        if len(sizes) != 1:
            raise ValueError(
                f"hierarchical allreduce: every node must hold as many ranks, got "
                f"{[len(n) for n in nodes]}"
            )
        me = rank()
        self.nodes = [list(n) for n in nodes]
        self.local_size, self.node_count = len(nodes[0]), len(nodes)
        mine = next(i for i, n in enumerate(self.nodes) if me in n)
        local = self.nodes[mine].index(me)
        groups: dict[str, ProcessGroup] = {}
        for kind in ("reduce-scatter", "all-gather"):
            for i, n in enumerate(self.nodes):
                g = new_group(n)
                if i == mine:
                    groups[kind] = g
        for j in range(self.local_size):
            g = new_group([n[j] for n in self.nodes])
            if j == local:
                groups["allreduce"] = g
        self.groups = groups
        self._labelled: set[int] = set()
        self._flight: list[
            _Handle
        ] = []  # handles not yet completed, in the order they were started

    def _comm(self, kind: str, array: Array) -> Communicator:
        comm = self.groups[kind].communicator_for(array)
        if id(comm) not in self._labelled:  # name the level in messages and byte counts
            level = "inter-node" if kind == "allreduce" else "intra-node"
            comm.label = f"{self.groups[kind].label} ({level} {kind})"
            self._labelled.add(id(comm))
        return comm

    def allreduce(
        self, array: Array, op: ReduceOp = ReduceOp.SUM, async_op: bool = True
    ) -> _Handle | None:
        """Sum ``array`` over the world, in place (``op`` must be SUM); a handle, or None
        after waiting when ``async_op`` is False."""
        if op is not ReduceOp.SUM:
            raise ValueError(f"hierarchical allreduce: only ReduceOp.SUM is supported, got {op}")
        handle = _Handle(self, array)
        self._flight.append(handle)
        self.advance()
        if not async_op:
            handle.wait()
            return None
        return handle

    def advance(self) -> None:
        """Test the stages in flight and start next stages, in start order."""
        allowed = _DONE
        for handle in self._flight:
            handle.step(allowed)
            allowed = handle.stage
        while self._flight and self._flight[0].stage == _DONE:
            self._flight.pop(0)

    def wait_for(self, handle: _Handle) -> None:
        """Block until ``handle`` has completed (waiting on the oldest stage in flight)."""
        while handle.stage != _DONE:
            self.advance()
            if handle.stage == _DONE:
                return
            self._flight[0].work.wait()


class _Handle:
    """One array's way through the three stages (0: reduce-scatter, 1: allreduce across
    nodes, 2: all-gather, 3: done)."""

    def __init__(self, owner: HierarchicalAllreduce, array: Array):
        self.owner, self.array = owner, array
        xp = _xp(array)
        self.copy_back = not _contiguous(array)
        flat = xp.ascontiguousarray(array).reshape(-1) if self.copy_back else array.reshape(-1)
        self.flat, self.n = flat, flat.size
        width = owner.local_size
        self.chunk = c = -(-self.n // width)
        if self.n == width * c:
            send = flat
        else:
            with _device(array):
                send = xp.zeros(width * c, array.dtype)
            send[: self.n] = flat
        with _device(array):
            block = xp.empty(c, array.dtype)
        # the padded array and this rank's block of it (None once done)
        self.send: Array | None = send
        self.block: Array | None = block
        self.stage = 0
        self.work: Work = started(owner._comm("reduce-scatter", array).reduce_scatter(send, block))

    @property
    def seq(self) -> int:
        """The sequence number of the stage in flight (for the hang watchdog)."""
        return getattr(self.work, "seq", -1)

    def step(self, allowed: int) -> None:
        """Go through every stage that has completed, up to stage ``allowed``."""
        while self.stage < allowed and self.work.is_completed():
            send, block = self.send, self.block
            if self.stage < 2 and (send is None or block is None):
                raise RuntimeError(f"hierarchical allreduce: stage {self.stage} after the end")
            if self.stage == 0 and block is not None:
                comm = self.owner._comm("allreduce", self.array)
                self.work = started(comm.allreduce(block))
            elif self.stage == 1 and block is not None and send is not None:
                comm = self.owner._comm("all-gather", self.array)
                self.work = started(comm.allgather(block, send))
            else:
                self._finish()
            self.stage += 1
            if self.stage == _DONE:
                return

    def _finish(self) -> None:
        if self.send is not None and self.send is not self.flat:
            self.flat[...] = self.send[: self.n]
        if self.copy_back:
            self.array[...] = self.flat.reshape(self.array.shape)
        self.send = self.block = None

    def is_completed(self) -> bool:
        """Whether the sum is complete (makes progress; never blocks)."""
        if self.stage != _DONE:
            self.owner.advance()
        return self.stage == _DONE

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the sum is complete."""
        self.owner.wait_for(self)
        return True


def _xp(array: Array) -> Any:
    if isinstance(array, np.ndarray):
        return np
    from ..backend import array_module_for

    return array_module_for(array)


def _contiguous(array: Array) -> bool:
    return bool(array.flags.c_contiguous)


def _device(array: Array) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext() if isinstance(array, np.ndarray) else array.device


def all_reduce(
    tensor: Tensor | Array,
    op: ReduceOp = ReduceOp.SUM,
    async_op: bool = False,
    ranks_per_node: int | None = None,
) -> _Handle | None:
    """Sum ``tensor`` (a Tensor or an array) over the world hierarchically, in place. Every
    rank calls it (the first call creates the process groups). ``ranks_per_node``: see
    ``node_layout``. Returns a handle with ``async_op=True``, else None."""
    from .process_group import _require, get_communicator

    array = tensor.array if isinstance(tensor, Tensor) else tensor
    # the groups belong to the current world (kept on it): a new init() makes new ones
    world = _require()
    cache = world.hierarchical_allreduce
    key = (ranks_per_node, os.environ.get("DISTGRAD_FAKE_NODES"))
    if key not in cache:
        cache[key] = HierarchicalAllreduce(node_layout(get_communicator(), ranks_per_node))
    handle = cache[key].allreduce(array, op, async_op=async_op)
    if isinstance(tensor, Tensor) and not async_op:
        tensor.bump_version()
    return handle
