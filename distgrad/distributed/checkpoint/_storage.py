"""Writing and reading a distributed checkpoint: the plan (which rank writes which piece), the
per-rank files, the global metadata, the commit through ``distgrad.checkpoint.store``, and the
verified, resharding read."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...autograd import Tensor
from ...checkpoint import store
from ...safetensors import CheckpointError, read_buffer, save_file
from ._tree import (
    Path,
    PerRank,
    ShardedTensor,
    describe,
    flatten,
    from_json,
    is_stateful,
    key_of,
    rows_of,
    to_json,
)

METADATA = ".metadata"
FORMAT = "distgrad.distributed.checkpoint"

# What the ranks exchange to agree who writes what: per tensor piece ``(key, global shape,
# dtype, start row, stop row)``, then the plain values and the per-rank values (as JSON data).
PieceInfo = tuple[str, tuple[int, ...], str, int, int]
Plan = tuple[list[PieceInfo], dict[str, Any], dict[str, Any]]
PieceKey = tuple[str, int, int]  # (key, start row, stop row)
# One planned read: (path in the state dict, target tensor, key, start row, stop row).
TensorRead = tuple[Path, Tensor, str, int, int]


def host(array: Any) -> np.ndarray:
    """A host numpy array of ``array`` (numpy or cupy)."""
    return array if isinstance(array, np.ndarray) else array.get()


def expand(state_dict: dict[str, Any]) -> tuple[Any, list[tuple[Path, Any]]]:
    """Replace Stateful values by their ``state_dict()`` (a shallow copy of the tree); returns
    the tree and ``[(path, stateful)]`` to call ``load_state_dict`` on after a load."""
    stateful: list[tuple[Path, Any]] = []

    def walk(node: Any, path: Path) -> Any:
        if is_stateful(node):
            stateful.append((path, node))
            return walk(node.state_dict(), path)
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        return node

    return walk(state_dict, ()), stateful


# ---- saving -------------------------------------------------------------------------------
class Snapshot:
    """What this rank contributes to a save: its tensor pieces (host copies when ``copy``) and
    its plain values, flattened."""

    def __init__(self, state_dict: dict[str, Any], rank: int, copy: bool):
        tree, _ = expand(state_dict)
        # (key, global shape, dtype, start, stop, rows: host or device)
        self.pieces: list[tuple[str, tuple[int, ...], str, int, int, Any]] = []
        self.objects: dict[str, Any] = {}
        self.per_rank: dict[str, Any] = {}
        for path, value in flatten(tree):
            key = key_of(path)
            if isinstance(value, ShardedTensor):
                array, shape, start = value.array, value.full_shape, value.rows[0]
            elif isinstance(value, Tensor):
                array = value.array
                shape = tuple(array.shape)
                start = 0
            elif isinstance(value, PerRank):
                self.per_rank[key] = to_json(value.value)
                continue
            else:
                self.objects[key] = to_json(value)
                continue
            rows = rows_of(array)
            if copy:
                rows = rows.copy()
            self.pieces.append((key, shape, str(array.dtype), start, start + rows.shape[0], rows))

    def plan(self) -> Plan:
        """The part every rank sends to the others to agree who writes what."""
        return (
            [(k, s, d, a, b) for k, s, d, a, b, _ in self.pieces],
            self.objects,
            self.per_rank,
        )


def assign_writers(plans: Sequence[Plan]) -> dict[PieceKey, int]:
    """``{(key, start, stop): rank}``: each distinct piece is written by one of the ranks that
    hold it, round-robin (a replicated tensor once, each shard by its owner). Raises if the
    ranks disagree on a tensor's shape or dtype."""
    holders: dict[PieceKey, list[int]] = {}
    shapes: dict[str, tuple[tuple[int, ...], str, int]] = {}
    for rank, (pieces, _, _) in enumerate(plans):
        for key, shape, dtype, start, stop in pieces:
            seen = shapes.setdefault(key, (tuple(shape), dtype, rank))
            if seen[:2] != (tuple(shape), dtype):
                raise ValueError(
                    f"distgrad.distributed.checkpoint.save: the ranks disagree on tensor "
                    f"{describe(key)!r}: rank {seen[2]} has shape {seen[0]} {seen[1]}, rank "
                    f"{rank} has {tuple(shape)} {dtype}"
                )
            if stop > start:
                holders.setdefault((key, start, stop), []).append(rank)
    return {
        piece: ranks[i % len(ranks)] for i, (piece, ranks) in enumerate(sorted(holders.items()))
    }


WAVE_BYTES = int(os.environ.get("DISTGRAD_CHECKPOINT_WAVE_BYTES", str(64 << 20)))


def file_name(rank: int, wave: int) -> str:
    """The data file of rank ``rank``'s wave ``wave``."""
    return f"__{rank}_{wave}.distcp"


def waves(
    plan: Plan, writers: dict[PieceKey, int], rank: int, limit: int | None = None
) -> dict[PieceKey, str]:
    """``{(key, start, stop): file}``: the pieces rank ``rank`` writes, cut in plan order into
    waves of at most ``limit`` bytes (a bigger piece is a wave of its own), one file each. Every
    rank computes every rank's waves alike from the plans."""
    limit = WAVE_BYTES if limit is None else limit
    out: dict[PieceKey, str] = {}
    wave, size = 0, 0
    for key, shape, dtype, start, stop in plan[0]:
        if writers.get((key, start, stop)) != rank:
            continue
        inner = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        nbytes = (stop - start) * inner * np.dtype(dtype).itemsize
        if size and size + nbytes > limit:
            wave, size = wave + 1, 0
        out[(key, start, stop)] = file_name(rank, wave)
        size += nbytes
    return out


def piece_name(key: str, start: int) -> str:
    """The name of the piece of tensor ``key`` starting at row ``start`` in its file."""
    return f"{start}:{key}"


def write_rank_files(
    staging: str, snapshot: Snapshot, files: dict[PieceKey, str]
) -> dict[str, dict[str, Any]]:
    """Write this rank's pieces into ``staging``, one file per wave (``files``: ``waves()``),
    each wave's pieces brought to the host only when it is written (so a device snapshot needs
    at most one wave of host memory) and dropped after; returns the files' manifest entries."""
    by_file: dict[str, list[tuple[str, Any]]] = {}
    for key, _, _, start, stop, rows in snapshot.pieces:
        name = files.get((key, start, stop))
        if name is not None:
            by_file.setdefault(name, []).append((piece_name(key, start), rows))
    snapshot.pieces = []
    listed: dict[str, dict[str, Any]] = {}
    for name in sorted(by_file, key=lambda n: int(n.rsplit("_", 1)[1].split(".")[0])):
        tensors = {piece: host(rows) for piece, rows in by_file.pop(name)}
        listed[name] = store.write_file(
            staging, name, lambda obj, f: save_file(obj, f), tensors, "writing"
        )
        del tensors
    return listed


def metadata(
    plans: Sequence[Plan], writers: dict[PieceKey, int], limit: int | None = None
) -> dict[str, Any]:
    """The global metadata: every tensor's global shape, dtype and pieces (file, rows), the
    plain values (rank 0's, or the first rank holding one) and the per-rank values."""
    tensors: dict[str, dict[str, Any]] = {}
    objects: dict[str, Any] = {}
    per_rank: dict[str, list[Any]] = {}
    for rank, (pieces, objs, mine) in enumerate(plans):
        files = waves(plans[rank], writers, rank, limit)
        for key, shape, dtype, start, stop in pieces:
            entry = tensors.setdefault(key, {"shape": list(shape), "dtype": dtype, "pieces": []})
            if (key, start, stop) in files:
                entry["pieces"].append(
                    {"file": files[(key, start, stop)], "start": start, "stop": stop}
                )
        for key, value in objs.items():
            objects.setdefault(key, value)
        for key, value in mine.items():
            per_rank.setdefault(key, [None] * len(plans))[rank] = value
    for key, entry in tensors.items():
        entry["pieces"].sort(key=lambda p: p["start"])
        covered = 0
        for p in entry["pieces"]:
            covered = max(covered, p["stop"]) if p["start"] <= covered else covered
        shape = entry["shape"]
        if covered != (shape[0] if shape else 1):
            raise ValueError(
                f"distgrad.distributed.checkpoint.save: the ranks' pieces of tensor "
                f"{describe(key)!r} cover rows 0:{covered} of {shape[0] if shape else 1}"
            )
    return {
        "format": FORMAT,
        "version": 1,
        "world_size": len(plans),
        "tensors": tensors,
        "objects": objects,
        "per_rank": per_rank,
    }


def write_metadata(staging: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Write the metadata file into ``staging``; returns its manifest entry."""
    return store.write_file(
        staging, METADATA, lambda obj, f: f.write(json.dumps(obj, sort_keys=True).encode()), meta
    )


# ---- loading ------------------------------------------------------------------------------
def find(checkpoint_id: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """The committed checkpoint directory to load from ``checkpoint_id`` (a root with
    ``LATEST``, or one checkpoint directory) and its checked manifest (rollback checks
    included)."""
    path = store.locate(os.fspath(checkpoint_id))
    return path, store.read_manifest(path)


def read_verified(
    path: str, manifest: dict[str, Any], name: str, needed_for: Sequence[str]
) -> bytearray:
    """File ``name`` of checkpoint ``path``, its size and SHA-256 checked against the manifest;
    errors name the file and the tensors (``needed_for``) this rank wanted from it."""
    where = os.path.join(path, name)
    wanted = ", ".join(repr(n) for n in needed_for[:4]) + (" ..." if len(needed_for) > 4 else "")
    info = manifest["files"].get(name)
    if info is None:
        raise CheckpointError(
            f"cannot load checkpoint {where!r} (needed for {wanted}): the manifest does not "
            f"list it; the metadata and the manifest do not match"
        )
    return store.read_checked(where, info, f" (needed for {wanted})")


def read_metadata(path: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's verified metadata (``metadata``'s dict); raises CheckpointError."""
    blob = read_verified(path, manifest, METADATA, ["the metadata"])
    try:
        meta = json.loads(blob)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        meta["tensors"], meta["objects"], meta["per_rank"]  # noqa: B018 (presence)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"cannot load checkpoint {os.path.join(path, METADATA)!r}: not a distributed "
            f"checkpoint's metadata ({type(exc).__name__}: {exc})"
        ) from None
    return meta


def saved_subtree(meta: dict[str, Any], prefix: Path, rank: int) -> Any:
    """The plain values saved under ``prefix`` (a Stateful's ``state_dict()``), rebuilt as
    nested dicts and lists, every per-rank value as the list of all saved ranks' values."""
    out: dict = {}
    found = False
    for table in ("objects", "per_rank"):
        for key, value in meta[table].items():
            path = tuple(json.loads(key))
            if path[: len(prefix)] != prefix or len(path) == len(prefix):
                continue
            found = True
            if table == "per_rank":
                value = [from_json(v) for v in value]
            else:
                value = from_json(value)
            node = out
            for p in path[len(prefix) : -1]:
                node = node.setdefault(p, {})
            node[path[-1]] = value
    return _lists(out) if found else None


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(isinstance(k, int) for k in node) and sorted(node) == list(range(len(node))):
        return [node[i] for i in range(len(node))]
    return node


def plan_reads(
    tree: Any, meta: dict[str, Any], where: str, skip: tuple[Path, ...] = ()
) -> tuple[list[TensorRead], list[tuple[Path, Any, str]]]:
    """Match the target tree against the metadata: ``([(path, target, key, start, stop)],
    [(path, target, key)])`` for tensors and plain values; raises ``CheckpointError`` naming the
    tensor and the metadata file on a missing key, a shape or a dtype mismatch."""
    tensors: list[TensorRead] = []
    values: list[tuple[Path, Any, str]] = []
    for path, target in flatten(tree):
        key = key_of(path)
        if isinstance(target, Tensor):
            entry = meta["tensors"].get(key)
            if isinstance(target, ShardedTensor):
                shape, dtype = target.full_shape, str(target.array.dtype)
                start, stop = target.rows
            else:
                shape, dtype, start = tuple(target.shape), str(target.array.dtype), 0
                stop = shape[0] if shape else 1
            if entry is None:
                raise CheckpointError(
                    f"cannot load checkpoint {where!r}: it has no tensor {describe(key)!r} "
                    f"(the state dict asks for it; missing key)"
                )
            if tuple(entry["shape"]) != shape or entry["dtype"] != dtype:
                raise CheckpointError(
                    f"cannot load checkpoint {where!r}: tensor {describe(key)!r} was saved with "
                    f"shape {tuple(entry['shape'])} {entry['dtype']}, the state dict has "
                    f"{shape} {dtype} (metadata mismatch)"
                )
            tensors.append((path, target, key, start, stop))
        elif any(path[: len(p)] == p for p in skip):
            continue  # a Stateful's plain values: taken whole from the metadata
        else:
            if key not in meta["objects"] and key not in meta["per_rank"]:
                if len(path) >= 3 and path[-3] == "param_groups":
                    continue  # a hyperparameter the saving optimizer did not have: kept

                raise CheckpointError(
                    f"cannot load checkpoint {where!r}: it has no value {describe(key)!r} "
                    f"(the state dict asks for it; missing key)"
                )
            values.append((path, target, key))
    return tensors, values


def read_pieces(
    path: str, manifest: dict[str, Any], meta: dict[str, Any], tensors: Sequence[TensorRead]
) -> list[np.ndarray]:
    """For each planned tensor read, the rows it needs assembled from the overlapping pieces
    (only the files holding them are read, each verified once)."""
    needs: dict[str, list[str]] = {}  # file -> [tensor names]
    for _, _, key, start, stop in tensors:
        for p in meta["tensors"][key]["pieces"]:
            if p["start"] < stop and p["stop"] > start:
                needs.setdefault(p["file"], []).append(describe(key))
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name, wanted in needs.items():
        blob = read_verified(path, manifest, name, wanted)
        arrays[name] = read_buffer(blob, repr(os.path.join(path, name)))[0]
    out = []
    for _, _, key, start, stop in tensors:
        entry = meta["tensors"][key]
        shape = tuple(entry["shape"])
        inner = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        rows = np.empty((stop - start, inner), dtype=entry["dtype"])
        covered = np.zeros(stop - start, bool)
        for p in entry["pieces"]:
            a, b = max(p["start"], start), min(p["stop"], stop)
            if a >= b:
                continue
            piece = arrays[p["file"]].get(piece_name(key, p["start"]))
            if piece is None or piece.shape != (p["stop"] - p["start"], inner):
                raise CheckpointError(
                    f"cannot load checkpoint {os.path.join(path, p['file'])!r}: it does not hold "
                    f"rows {p['start']}:{p['stop']} of tensor {describe(key)!r} as the metadata "
                    f"says (metadata mismatch)"
                )
            rows[a - start : b - start] = piece[a - p["start"] : b - p["start"]]
            covered[a - start : b - start] = True
        if not covered.all():
            raise CheckpointError(
                f"cannot load checkpoint {os.path.join(path, METADATA)!r}: rows "
                f"{start}:{stop} of tensor {describe(key)!r} are not all in the checkpoint "
                f"(a missing shard)"
            )
        out.append(rows)
    return out
