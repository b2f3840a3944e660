"""``init_device_mesh`` / ``DeviceMesh``: ranks arranged in a grid, one process group per row and
column (``torch.distributed.device_mesh``), for hybrid sharding.

A 2-D mesh ``(replicate, shard)`` puts world rank ``r * shard + s`` at ``[r, s]``: the ranks of a
row (same r) shard the parameters among themselves, the ranks of a column (same s) hold the
same shard and all-reduce its gradient (HSDP: shard within a group, e.g. a node, replicate
across groups). Groups are made with ``new_group`` by every rank in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .groups import ProcessGroup, new_group
from .process_group import init
from .process_group import rank as get_rank
from .process_group import world_size as get_world_size

if TYPE_CHECKING:
    from ..nn.module import Module
    from .communicator import Communicator

__all__ = ["DeviceMesh", "init_device_mesh"]


class DeviceMesh:
    """Ranks in an n-d grid (``mesh``: array of world ranks) with one process group per slice
    along each dimension. ``mesh["name"]`` is the 1-D mesh of this rank along that dimension."""

    def __init__(
        self,
        device_type: str,
        mesh: Any,
        mesh_dim_names: Sequence[str] | None = None,
        _groups: list[ProcessGroup | None] | None = None,
    ):
        self.device_type = device_type
        self.mesh = np.asarray(mesh, dtype=np.int64)
        self.mesh_dim_names = tuple(mesh_dim_names) if mesh_dim_names else None
        if self.mesh_dim_names is not None and len(self.mesh_dim_names) != self.mesh.ndim:
            raise ValueError(
                f"init_device_mesh: {len(self.mesh_dim_names)} mesh_dim_names for a "
                f"{self.mesh.ndim}-d mesh {self.mesh.shape}"
            )
        self._groups = _groups if _groups is not None else self._make_groups()

    def _make_groups(self) -> list[ProcessGroup | None]:
        """One group per dimension: this rank's slice (every rank creates every slice's group,
        in the same order, as ``new_group`` requires)."""
        me = get_rank()
        mine: list[ProcessGroup | None] = []  # None: this rank is not in the mesh
        for dim in range(self.mesh.ndim):
            moved = np.moveaxis(self.mesh, dim, -1).reshape(-1, self.mesh.shape[dim])
            chosen: ProcessGroup | None = None
            for ranks in moved.tolist():
                group = new_group(ranks)
                if me in ranks:
                    chosen = group
            mine.append(chosen)
        return mine

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.mesh.ndim

    def size(self, mesh_dim: int | None = None) -> int:
        """Ranks in the mesh, or along ``mesh_dim``."""
        return int(self.mesh.size if mesh_dim is None else self.mesh.shape[mesh_dim])

    def _dim(self, dim: int | str) -> int:
        if isinstance(dim, str):
            if self.mesh_dim_names is None or dim not in self.mesh_dim_names:
                raise KeyError(f"DeviceMesh has no dimension {dim!r} ({self.mesh_dim_names})")
            return self.mesh_dim_names.index(dim)
        return int(dim)

    def get_group(self, mesh_dim: int | str | None = None) -> ProcessGroup:
        """The process group of this rank along ``mesh_dim`` (a 1-D mesh: its only one)."""
        if mesh_dim is None:
            if self.ndim != 1:
                raise RuntimeError("get_group: give mesh_dim for a mesh of more than one dim")
            mesh_dim = 0
        return self._group(self._dim(mesh_dim))

    def _group(self, dim: int) -> ProcessGroup:
        group = self._groups[dim]
        if group is None:
            raise RuntimeError(
                f"DeviceMesh: rank {get_rank()} is not in the mesh {self.mesh.tolist()}, so it "
                f"has no process group along dimension {dim}"
            )
        return group

    def get_local_rank(self, mesh_dim: int | str | None = None) -> int:
        """This rank's index along ``mesh_dim``."""
        return self.get_group(mesh_dim).rank()

    def __getitem__(self, name: int | str) -> DeviceMesh:
        dim = self._dim(name)
        where = np.argwhere(self.mesh == get_rank())[0]
        index = tuple(slice(None) if d == dim else int(where[d]) for d in range(self.ndim))
        names = None if self.mesh_dim_names is None else (self.mesh_dim_names[dim],)
        return DeviceMesh(self.device_type, self.mesh[index], names, [self._groups[dim]])

    def shard_communicator(self, modules: Iterable[Module]) -> Communicator:
        """(for ``fully_shard``) the communicator of the shard dimension (the last)."""
        first = next((p for m in modules for p in m.parameters()), None)
        return self._group(len(self._groups) - 1).communicator_for(
            None if first is None else first.array
        )

    def replicate_communicator(self, modules: Iterable[Module]) -> Communicator | None:
        """(for ``fully_shard``) the communicator of the replicate dimension (2-D meshes)."""
        if self.ndim < 2:
            return None
        first = next((p for m in modules for p in m.parameters()), None)
        return self._group(0).communicator_for(None if first is None else first.array)

    def __repr__(self) -> str:
        return f"DeviceMesh({self.device_type!r}, {self.mesh.tolist()})"


def init_device_mesh(
    device_type: str, mesh_shape: Sequence[int], *, mesh_dim_names: Sequence[str] | None = None
) -> DeviceMesh:
    """A mesh of shape ``mesh_shape`` over all ranks (row-major), e.g. ``(replicate, shard)``
    for hybrid sharding; every rank must call it (it makes process groups)."""
    if device_type not in ("cpu", "cuda"):
        raise ValueError(
            f"init_device_mesh: device_type must be 'cpu' or 'cuda', got {device_type!r}"
        )
    init()
    shape = tuple(int(s) for s in mesh_shape)
    world = get_world_size()
    if int(np.prod(shape)) != world:
        raise ValueError(
            f"init_device_mesh: mesh shape {shape} holds {int(np.prod(shape))} ranks but the "
            f"world has {world}"
        )
    return DeviceMesh(device_type, np.arange(world).reshape(shape), mesh_dim_names)
