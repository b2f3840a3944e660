"""The on-disk format of ``distgrad.checkpoint``: writing, committing, verifying, pruning.

A checkpoint root directory holds::

    LATEST                  {"checkpoint": "ckpt-000000200", "sequence": 7, "step": 200}
    ckpt-000000100/         committed checkpoints (the newest ``keep``)
    ckpt-000000200/
        model.safetensors   each written by distgrad.save (safetensors + JSON structure)
        optimizer.safetensors, scheduler.safetensors, meta.safetensors, ranks.safetensors
        MANIFEST.json       {"format", "version", "name", "sequence", "step", "epoch",
                             "world_size", "files": {file: {"sha256", "bytes"}},
                             "manifest_sha256"}

A save writes the files into a hidden staging directory (``.staging-*``), hashing every byte as
it goes, fsyncs them, writes and fsyncs the manifest and the staging directory, renames it to
``ckpt-<step>`` (``ckpt-<step>.<n>`` if that name is taken) and fsyncs the root. Only then is
``LATEST`` replaced atomically (temporary file, fsync, rename, fsync of the root): that rename is
the commit. Checkpoints beyond ``keep`` are pruned after it: each is first renamed to a hidden
``.trash-*`` name, so a half-deleted checkpoint is never visible. Leftovers of an interrupted save
(staging and trash directories, checkpoints newer than ``LATEST``'s that were never committed)
are removed by the next save. One process at a time may save into a root.

``MANIFEST.json`` carries the SHA-256 of its own canonical JSON (``manifest_sha256``), so a
damaged manifest is detected like a damaged file. ``sequence`` counts commits in the root and
orders checkpoints (a resumed run may save a lower step after a higher one). Pruning removes
first the checkpoints that a quick look (manifest, file sizes) shows damaged, then the oldest;
the files' hashes are checked only when loading.

Rollback protection: after ``LATEST`` names a checkpoint, a ``COMMITTED`` marker is written into
it (best effort; the next save re-marks ``LATEST``'s target). Loading refuses when ``LATEST``'s
sequence differs from its target's manifest (the pointer was edited), when a checkpoint with a
marker is newer than ``LATEST``'s (the pointer was rolled back), or when a ``ckpt-<step>``
directory's manifest names another checkpoint or step (directories swapped); with ``fallback``
the newest committed valid checkpoint is loaded instead, with the problem reported. A complete
but unmarked newer checkpoint (a crash between rename and pointer) is not a rollback."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from ..safetensors import CheckpointError, _sniff, atomic_write

logger = logging.getLogger(__name__)

# How a file is written: ``write(obj, fileobj)`` (e.g. ``distgrad.save``).
Writer = Callable[[Any, Any], object]

__all__ = [
    "commit",
    "begin",
    "write_file",
    "finish",
    "abort",
    "open_checkpoint",
    "latest",
    "verify",
    "locate",
    "read_manifest",
    "KILL_ENV",
    "PHASES",
]

FORMAT, VERSION = "distgrad.checkpoint", 1
MANIFEST, POINTER, COMMITTED = "MANIFEST.json", "LATEST", "COMMITTED"
KILL_ENV = "DISTGRAD_CHECKPOINT_TEST_KILL_AT"  # test-only: SIGKILL this process at a phase
PHASES = ("writing", "written", "synced", "pointer", "prune")
_NAME = re.compile(r"ckpt-(\d+)(?:\.(\d+))?")
_LEFTOVER = (".staging-", ".trash-", f".{POINTER}.")


def _phase(name: str) -> None:
    """Fault injection for tests: die here, as if the machine lost power, when asked to."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class _HashingFile:
    """A new file, written unbuffered, that hashes every byte written to it."""

    def __init__(self, path: str, phase: str | None = None):
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self.path, self.sha, self.size, self.phase = path, hashlib.sha256(), 0, phase

    def write(self, data: bytes | bytearray | memoryview) -> int:
        fd = self._open_fd()
        view = memoryview(data).cast("B")
        self.sha.update(view)
        total = len(view)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:  # e.g. ENOSPC: say which file (the errno is kept)
            raise OSError(exc.errno, exc.strerror, self.path) from None
        self.size += total
        if self.phase:
            _phase(self.phase)
        return total

    def _open_fd(self) -> int:
        if self.fd is None:
            raise ValueError(f"write to closed file {self.path!r}")
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


# ---- reading the root ----------------------------------------------------------------------
def read_manifest(path: str) -> dict[str, Any]:
    """The manifest of checkpoint directory ``path``, checked (its own checksum, format,
    version, file list, and that it names this directory); raises ``CheckpointError`` naming
    the problem. The files it lists are not read (``verify`` checks them)."""
    where = os.path.join(path, MANIFEST)
    try:
        with open(where, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if not os.path.isdir(path):
            raise CheckpointError(
                f"cannot load checkpoint {path!r}: the directory is missing"
            ) from None
        raise CheckpointError(
            f"cannot load checkpoint {path!r}: it has no {MANIFEST}, so it was "
            f"not completely written or is not a distgrad checkpoint"
        ) from None
    try:
        manifest = json.loads(raw)
        claimed = manifest.pop("manifest_sha256")
        ok = hashlib.sha256(_canonical(manifest)).hexdigest() == claimed
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: the manifest is not valid "
            f"({type(exc).__name__}: {exc}): it is corrupted"
        ) from None
    if not ok:
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: manifest checksum mismatch: "
            f"the manifest is corrupted"
        )
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: format "
            f"{manifest.get('format')!r} version {manifest.get('version')!r} "
            f"is not {FORMAT!r} version {VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(n, str)
        and os.path.basename(n) == n
        and n not in ("", ".", "..")
        and isinstance(i, dict)
        for n, i in files.items()
    ):
        raise CheckpointError(f"cannot load checkpoint {where!r}: its file list is malformed")
    name = os.path.basename(os.path.normpath(path))
    found = _NAME.fullmatch(name)
    if found and (
        manifest.get("name") != name
        or (type(manifest.get("step")) is int and manifest["step"] != int(found.group(1)))
    ):
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: the manifest names checkpoint "
            f"{manifest.get('name')!r} (step {manifest.get('step')}) but its directory is "
            f"{name!r}: checkpoint directories were renamed or swapped"
        )
    return manifest


def read_whole(path: str) -> bytearray:
    """The whole file, into a writable buffer (decoded arrays can be views of it)."""
    with open(path, "rb") as f:
        blob = bytearray(os.fstat(f.fileno()).st_size)
        view, done = memoryview(blob), 0
        while done < len(blob):
            n = f.readinto(view[done:])
            if not n:
                return blob[:done]  # shrank while being read: the size check reports it
            done += n
        extra = f.read()
    return blob + extra if extra else blob


def read_checked(where: str, info: Mapping[str, Any], needed_for: str = "") -> bytearray:
    """File ``where`` whole, its size and SHA-256 checked against its manifest entry
    ``info``; raises ``CheckpointError`` naming the file and the problem (``needed_for``, e.g.
    `` (needed for 'fc.weight')``, is appended to every message)."""
    try:
        blob = read_whole(where)
    except FileNotFoundError:
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: the file is missing{needed_for}"
        ) from None
    if len(blob) != info.get("bytes"):
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: it has {len(blob)} bytes "
            f"but the manifest says {info.get('bytes')}: it is "
            + ("truncated" if len(blob) < info.get("bytes", 0) else "corrupted")
            + f"{needed_for}."
            + _sniff(bytes(blob[:8]))
        )
    digest = hashlib.sha256(blob).hexdigest()
    if digest != info.get("sha256"):
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: checksum mismatch (sha256 "
            f"{digest[:16]}..., the manifest says "
            f"{str(info.get('sha256'))[:16]}...): the file is corrupted{needed_for}."
            + _sniff(bytes(blob[:8]))
        )
    return blob


def verify(path: str) -> tuple[dict[str, Any], dict[str, bytearray]]:
    """Check checkpoint directory ``path`` completely: its manifest, then the size and SHA-256
    of every file it lists. Returns ``(manifest, {file: bytes})``; raises ``CheckpointError``
    naming the file and the problem. Nothing is decoded."""
    manifest = read_manifest(path)
    blobs = {
        name: read_checked(os.path.join(path, name), info)
        for name, info in manifest["files"].items()
    }
    return manifest, blobs


def _read_pointer(root: str) -> dict[str, Any] | None:
    """``LATEST``'s record, or None when there is none; raises CheckpointError if damaged."""
    where = os.path.join(root, POINTER)
    try:
        with open(where, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(raw)
        if (
            not _NAME.fullmatch(record["checkpoint"])
            or type(record["sequence"]) is not int
            or type(record["step"]) is not int
        ):
            raise ValueError("unexpected fields")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"cannot load checkpoint {where!r}: the pointer is corrupted "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return record


def _sequence(path: str) -> int:
    """The commit sequence number of checkpoint directory ``path``, or -1 when a quick look
    (manifest, file sizes; no hashing) shows it is damaged."""
    try:
        manifest = read_manifest(path)
        for name, info in manifest["files"].items():
            if os.path.getsize(os.path.join(path, name)) != info.get("bytes"):
                return -1
        return int(manifest["sequence"])
    except (CheckpointError, OSError, ValueError, TypeError, KeyError):
        return -1


def _committed(path: str) -> bool:
    """Whether ``LATEST`` ever named checkpoint directory ``path`` (its ``COMMITTED`` marker,
    written after the pointer's rename)."""
    return os.path.isfile(os.path.join(path, COMMITTED))


def _mark_committed(path: str) -> None:
    """Best effort, not fsynced: the marker only lets a later load see that the pointer was
    rolled back; the next save re-marks the pointer's target if it was lost."""
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not _committed(path):
            with open(os.path.join(path, COMMITTED), "wb") as f:
                f.write(b"committed\n")


def _sequences(root: str) -> dict[str, int]:
    """``{name: sequence}`` of the checkpoint directories in ``root`` (see ``_sequence``)."""
    return {
        name: _sequence(os.path.join(root, name))
        for name in os.listdir(root)
        if _NAME.fullmatch(name) and os.path.isdir(os.path.join(root, name))
    }


def _candidates(root: str, fallback: bool) -> list[str | CheckpointError]:
    """Checkpoint paths to try, best first: LATEST's target, then (with ``fallback``) older
    committed ones, newest first. Problems found on the way are returned as CheckpointErrors in
    the list, so the caller can report them."""
    if os.path.isfile(root):
        with open(root, "rb") as f:
            hint = _sniff(f.read(8))
        raise CheckpointError(
            f"cannot load checkpoint {root!r}: it is a file, not a checkpoint "
            f"directory written by distgrad.checkpoint.save.{hint}"
        )
    if os.path.isfile(os.path.join(root, MANIFEST)):
        return [root]  # one checkpoint, named explicitly
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no checkpoint directory {root!r}")
    problem: CheckpointError | None
    try:
        pointer = _read_pointer(root)
    except CheckpointError as exc:
        if not fallback:
            raise
        pointer, problem = None, exc
    else:
        problem = (
            None
            if pointer is not None
            else CheckpointError(
                f"cannot load checkpoint {os.path.join(root, POINTER)!r}: the pointer is missing, "
                f"so no checkpoint was committed here"
            )
        )
    sequences = _sequences(root)
    if pointer is None and not sequences:
        raise FileNotFoundError(
            f"no checkpoint in {root!r} (no {POINTER} and no ckpt-* directories)"
        )
    out: list[str | CheckpointError] = [] if problem is None else [problem]
    if pointer is not None:
        rollback = _rolled_back(root, pointer, sequences)
        if rollback is not None:
            if not fallback:
                raise rollback
            out.append(rollback)
            newer = sorted((s, n) for n, s in sequences.items() if s > pointer["sequence"])
            out += [
                os.path.join(root, n)
                for _, n in reversed(newer)
                if _committed(os.path.join(root, n))
            ]
        out.append(os.path.join(root, pointer["checkpoint"]))
    if fallback:
        limit = pointer["sequence"] if pointer is not None else float("inf")
        older = sorted(
            (s, n)
            for n, s in sequences.items()  # damaged ones (-1): last
            if s < limit and (pointer is None or n != pointer["checkpoint"])
        )
        out += [os.path.join(root, n) for _, n in reversed(older)]
    return out


def _rolled_back(
    root: str, pointer: dict[str, Any], sequences: dict[str, int]
) -> CheckpointError | None:
    """The problem when ``LATEST`` does not name the newest committed checkpoint: its target's
    manifest has another sequence number (the pointer was edited), or a checkpoint committed
    after it exists (the pointer was put back). None when it is consistent."""
    where = os.path.join(root, POINTER)
    target = pointer["checkpoint"]
    seq = sequences.get(target)
    if seq is not None and seq >= 0 and seq != pointer["sequence"]:
        return CheckpointError(
            f"cannot load checkpoint {where!r}: it names {target!r} with commit sequence "
            f"{pointer['sequence']} but that checkpoint's manifest says sequence {seq}: the "
            f"pointer was edited or checkpoint directories were swapped. Refusing to resume "
            f"from a checkpoint that may be older than the newest committed one; restore "
            f"{POINTER}, or pass fallback=True to load the newest committed valid checkpoint"
        )
    newer = [
        n
        for n, s in sequences.items()
        if s > pointer["sequence"] and _committed(os.path.join(root, n))
    ]
    if newer:
        newest = max(newer, key=sequences.__getitem__)
        return CheckpointError(
            f"cannot load checkpoint {where!r}: it names {target!r} (sequence "
            f"{pointer['sequence']}) but {newest!r} (sequence {sequences[newest]}) was "
            f"committed after it: the pointer was rolled back. Refusing to resume from an older "
            f"checkpoint silently; restore {POINTER}, remove the newer checkpoints, or pass "
            f"fallback=True to load the newest committed valid checkpoint"
        )
    return None


def locate(root: str) -> str:
    """The checkpoint directory to load from ``root``: ``root`` itself when it is one
    checkpoint directory, else the committed checkpoint its ``LATEST`` names, after the
    rollback checks (the pointer edited or rolled back raises ``CheckpointError``). Raises
    ``FileNotFoundError`` when there is no checkpoint. Nothing is verified (``verify`` does
    that)."""
    for candidate in _candidates(root, False):
        if isinstance(candidate, CheckpointError):
            raise candidate
        return candidate
    raise FileNotFoundError(f"no checkpoint in {root!r}")


def open_checkpoint(
    root: str,
    fallback: bool = False,
    decode: Callable[[str, dict[str, bytearray]], Any] | None = None,
) -> tuple[str, dict[str, Any], Any, list[str]]:
    """Find, verify and decode the checkpoint to load from ``root`` (a root directory or one
    checkpoint directory). ``decode(path, blobs)`` turns the verified files into objects
    (raising CheckpointError for a file it cannot read). Returns ``(path, manifest, decoded,
    skipped)``, where ``skipped`` lists the problems of the checkpoints passed over (only with
    ``fallback``)."""
    skipped: list[str] = []
    for candidate in _candidates(root, fallback):
        if isinstance(candidate, CheckpointError):
            skipped.append(str(candidate))
            continue
        try:
            manifest, blobs = verify(candidate)
            decoded = blobs if decode is None else decode(candidate, blobs)
        except CheckpointError as exc:
            if not fallback:
                raise
            skipped.append(str(exc))
            continue
        return candidate, manifest, decoded, skipped
    raise CheckpointError(f"no valid checkpoint in {root!r}:\n  " + "\n  ".join(skipped))


def latest(root: str) -> str | None:
    """The path of the committed checkpoint ``LATEST`` names in ``root``, or None (not
    verified: ``load`` does that)."""
    try:
        pointer = _read_pointer(root)
    except (CheckpointError, NotADirectoryError):
        return None
    return None if pointer is None else os.path.join(root, pointer["checkpoint"])


# ---- writing ----------------------------------------------------------------------------
def _remove(path: str, phase: str | None = None) -> None:
    """Delete a checkpoint directory: hide it under a trash name first, then its files."""
    root, name = os.path.split(path)
    trash = os.path.join(root, f".trash-{name}-{os.getpid()}")
    os.rename(path, trash)
    for entry in os.listdir(trash):
        os.unlink(os.path.join(trash, entry))
        if phase:
            _phase(phase)
    os.rmdir(trash)


def _clean(root: str, pointer: dict[str, Any] | None, sequences: dict[str, int]) -> None:
    """Remove what interrupted saves left: staging/trash directories, pointer temporaries and
    checkpoints newer than the committed one (never committed)."""
    for name in os.listdir(root):
        if name.startswith(_LEFTOVER):
            path = os.path.join(root, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
    if pointer is not None:
        for name, seq in list(sequences.items()):
            if seq > pointer["sequence"] and not _committed(os.path.join(root, name)):
                _remove(os.path.join(root, name))
                del sequences[name]


def _free_name(root: str, step: int) -> str:
    name, n = f"ckpt-{step:09d}", 0
    while os.path.exists(os.path.join(root, name)):
        n += 1
        name = f"ckpt-{step:09d}.{n}"
    return name


def begin(root: str, step: int) -> tuple[str, str, int]:
    """Start a checkpoint of ``step`` in ``root``: remove leftovers of interrupted saves and
    make a staging directory. Returns ``(staging, name, sequence)``; the files go into
    ``staging`` (``write_file``) and ``finish`` commits them."""
    os.makedirs(root, exist_ok=True)
    try:
        pointer = _read_pointer(root)
    except CheckpointError:
        pointer = None  # damaged: the commit replaces it
    if pointer is not None:
        _mark_committed(os.path.join(root, pointer["checkpoint"]))
    sequences = _sequences(root)
    _clean(root, pointer, sequences)
    sequence = 1 + max([pointer["sequence"] if pointer else 0, *sequences.values()])
    name = _free_name(root, step)
    staging = tempfile.mkdtemp(prefix=f".staging-{name}-", dir=root)
    return staging, name, sequence


def write_file(
    staging: str, fname: str, write: Writer, obj: object, phase: str | None = None
) -> dict[str, Any]:
    """Write ``obj`` as file ``fname`` of a staging directory with ``write(obj, fileobj)``,
    hashing every byte, and fsync it; returns its manifest entry ``{"sha256", "bytes"}``."""
    handle = _HashingFile(os.path.join(staging, fname), phase)
    try:
        write(obj, handle)
        _phase("written")
        os.fsync(handle._open_fd())
    finally:
        handle.close()
    return {"sha256": handle.sha.hexdigest(), "bytes": handle.size}


def finish(
    root: str,
    staging: str,
    name: str,
    sequence: int,
    info: Mapping[str, Any],
    listed: Mapping[str, Any],
    keep: int,
) -> str:
    """Commit a staging directory whose files ``listed`` (name -> ``write_file``'s entry) are
    written: manifest, rename to ``name``, then the ``LATEST`` pointer; prune beyond ``keep``.
    Returns the checkpoint's path. On an error before the pointer is replaced the staging
    directory is removed and the previous checkpoint stays committed."""
    try:
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "name": name,
            "sequence": sequence,
            **info,
            "files": listed,
        }
        manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        handle = _HashingFile(os.path.join(staging, MANIFEST))
        try:
            handle.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
            os.fsync(handle._open_fd())
        finally:
            handle.close()
        _fsync_dir(staging)
        path = os.path.join(root, name)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(root)
    _phase("synced")
    with atomic_write(os.path.join(root, POINTER)) as f:
        f.write(
            json.dumps({"checkpoint": name, "sequence": sequence, "step": info["step"]}).encode()
            + b"\n"
        )
        _phase("pointer")
    _mark_committed(path)
    sequences = _sequences(root)
    for old in sorted(sequences, key=sequences.__getitem__)[:-keep]:
        try:
            _remove(os.path.join(root, old), "prune")
        except OSError as exc:  # the new checkpoint is committed: report, don't fail the save
            logger.warning("could not prune %r in %r: %s", old, root, exc)
    return path


def abort(staging: str) -> None:
    """Remove a staging directory (a save that failed): nothing of it becomes visible."""
    shutil.rmtree(staging, ignore_errors=True)


def commit(
    root: str, files: Mapping[str, object], info: Mapping[str, Any], keep: int, write: Writer
) -> str:
    """Write one checkpoint into ``root`` and commit it; return its path.

    ``files`` maps file names to objects; ``write(obj, fileobj)`` serializes one (the model
    file is the first). ``info`` adds fields to the manifest (``step``, ``epoch``...)."""
    staging, name, sequence = begin(root, info["step"])
    try:
        listed = {
            fname: write_file(staging, fname, write, obj, "writing" if i == 0 else None)
            for i, (fname, obj) in enumerate(files.items())
        }
    except BaseException:
        abort(staging)
        raise
    return finish(root, staging, name, sequence, info, listed, keep)
