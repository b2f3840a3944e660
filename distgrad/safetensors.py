"""A small, strict reader and writer of the safetensors format (no dependency on the
``safetensors`` package; files are interchangeable with it).

Layout::

    8 bytes       N, the header length, unsigned little-endian
    N bytes       UTF-8 JSON: {"__metadata__": {str: str, ...},
                               "<name>": {"dtype": "F32", "shape": [2, 3],
                                          "data_offsets": [begin, end]}, ...}
                  padded with spaces so that the data starts at a multiple of 8 bytes
    data section  every tensor's raw little-endian row-major bytes at [begin, end) from the
                  start of the section, back to back: no gaps, no overlaps, nothing after

Dtypes: BOOL, U8, I8, I16, I32, I64, F16, F32, F64, and BF16 when ml_dtypes is installed.

Files written here carry metadata keys of their own: ``distgrad.version`` ("3"),
``distgrad.chunk_bytes``, ``distgrad.chunk_checksum`` ("crc32") and ``distgrad.sha256``: the
SHA-256 of the canonical header JSON (sorted keys, no spaces, without the digest itself)
followed by the checksums of the data section's consecutive chunks of ``chunk_bytes`` (the last
one shorter; CRC-32, 4 bytes little-endian each). The chunks are checksummed on worker threads
while the main thread writes or reads (zlib and hashlib release the GIL), so checking costs
little more than the I/O. Version "2" files (SHA-256 chunk digests, 32 bytes each) and version
"1" files (one SHA-256 over header and data) are still read. When a file has any ``distgrad.``
key the digest is required and verified, so a corrupted byte anywhere in it is reported; files
of other writers are checked structurally. Every problem raises ``CheckpointError`` naming the
file and what is wrong; nothing in a file is ever executed.

Why CRC-32 for the chunks: a checksum stored in the file it protects guards against accidental
corruption only (whoever rewrites the data can rewrite the digest), and for that CRC-32 catches
every burst of up to 32 bits and any other damage but for a chance of 2^-32 per chunk. It is
computed by zlib-ng (a dependency: the same CRC-32 as zlib's with SIMD folding, 11 GB/s here
against zlib's 2.8 and SHA-256's 1.4), or by zlib where zlib-ng is not installed; the checksum
was most of a load's CPU time. Tamper evidence needs a digest kept elsewhere: the checkpoint
store's manifest holds each file's SHA-256 (``distgrad.checkpoint.store``).

Writing to a path is atomic: the data goes to a temporary file in the same directory, which is
flushed, fsynced and renamed over the target (then the directory is fsynced). A failure midway
removes the temporary file and leaves any previous file at the path as it was. To a seekable
file the header is written first with a placeholder digest of the same length and rewritten
once the data is written and hashed; to others the data is hashed before it is written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import mmap as _mmap
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, Protocol

import numpy as np

from .backend.dtypes import bfloat16

try:  # the same CRC-32 as zlib's, about 4x faster (SIMD); both release the GIL
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - zlib-ng is a dependency; installed without it
    from zlib import crc32

__all__ = ["CheckpointError", "save_file", "load_file", "read", "atomic_write"]

_NUMPY_TYPES: dict[str, Any] = {  # numpy scalar types (and ml_dtypes' bfloat16)
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
}
if bfloat16 is not None:
    _NUMPY_TYPES["BF16"] = bfloat16.np
_NUMPY_OF: dict[str, np.dtype] = {name: np.dtype(t) for name, t in _NUMPY_TYPES.items()}
_NAME_OF: dict[np.dtype, str] = {t: name for name, t in _NUMPY_OF.items()}
_OWN_KEYS = (
    "distgrad.version",
    "distgrad.sha256",
    "distgrad.chunk_bytes",
    "distgrad.chunk_checksum",
)
CHUNK_BYTES = 4 << 20  # checksummed separately, so several threads can check one file
_HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
_MAX_HEADER = 100_000_000  # the safetensors package's own limit
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
_UMASK = os.umask(0)
os.umask(_UMASK)


class CheckpointError(RuntimeError, ValueError):
    """A file that cannot be loaded as a checkpoint: truncated, corrupted, or not one at all."""


class _BinaryReader(Protocol):
    """What reading needs of a binary file object (``open(path, "rb")``, ``io.BytesIO``)."""

    def read(self, size: int = -1, /) -> bytes: ...
    def readinto(self, buffer: memoryview, /) -> int | None: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...
    def seekable(self) -> bool: ...
    def fileno(self) -> int: ...


# What ``save_file`` writes to and ``read`` reads from: a path, or a binary file object.
PathType = str | os.PathLike[str]


def describe(file: object) -> str:
    """How error messages name ``file`` (a path or a file object)."""
    if isinstance(file, (str, bytes, os.PathLike)):
        return repr(os.fsdecode(file))
    name = getattr(file, "name", None)
    return repr(name) if isinstance(name, str) else f"<{type(file).__name__} object>"


# ---- writing -----------------------------------------------------------------------------
def _host_bytes(name: str, value: object) -> tuple[np.ndarray, np.ndarray]:
    """(array with the tensor's dtype and shape, its little-endian row-major bytes)."""
    numpy = getattr(value, "numpy", None)  # a Tensor
    array = numpy(force=True) if numpy is not None else np.asarray(value)
    if array.dtype not in _NAME_OF:
        raise TypeError(
            f"cannot save {name!r}: arrays of dtype {array.dtype} are not "
            f"supported (supported: {', '.join(str(t) for t in _NAME_OF)}); "
            f"convert it first, e.g. with .astype()"
        )
    flat = np.ascontiguousarray(array.reshape(-1), dtype=array.dtype.newbyteorder("<"))
    return array, flat.view(np.uint8)


def _canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


@contextlib.contextmanager
def atomic_write(path: PathType) -> Iterator[IO[bytes]]:
    """A binary file to write that replaces ``path`` only once it is completely on disk."""
    path = os.path.realpath(os.fspath(path))
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:  # make the rename itself durable
        os.fsync(dir_fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: this file system cannot sync directories
            raise OSError(
                exc.errno,
                f"{path} was written and renamed into place, but syncing "
                f"its directory failed ({exc.strerror}); the new file may "
                f"not survive a crash",
            ) from exc
    finally:
        os.close(dir_fd)


class _ChunkHasher:
    """The checksums (``kind``: "crc32" or "sha256") of consecutive ``chunk`` -byte pieces of a
    byte stream fed in order (``feed``), computed on worker threads; ``digests()`` waits for
    them. As a context manager it owns its threads (made per file: a pool kept across calls
    would not survive a fork). ``chunk=None`` hashes the whole stream with SHA-256 as one
    piece, in order, on one thread (version 1 files)."""

    def __init__(self, chunk: int | None, kind: str = "crc32"):
        self.chunk = chunk
        self.pending: list[memoryview] = []
        self.futures: list[Future[Any]] = []
        self.checksum = _CHECKSUMS[kind]
        self.filled = 0
        self.pool = ThreadPoolExecutor(1 if chunk is None else _HASH_THREADS)
        self.whole = hashlib.sha256() if chunk is None else None

    def __enter__(self) -> _ChunkHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def feed(self, data: memoryview) -> None:
        if self.whole is not None or self.chunk is None:  # (whole: exactly when chunk is None)
            if self.whole is not None:
                self.futures.append(self.pool.submit(self.whole.update, data))
            return
        while len(data):
            take = min(len(data), self.chunk - self.filled)
            self.pending.append(data[:take])
            self.filled += take
            data = data[take:]
            if self.filled == self.chunk:
                self._flush()

    def _flush(self) -> None:
        pieces, self.pending, self.filled = self.pending, [], 0
        self.futures.append(self.pool.submit(self.checksum, pieces))

    def digests(self) -> bytes:
        """The concatenated chunk digests (or, for one piece, the hasher's state)."""
        if self.pending:
            self._flush()
        results = [f.result() for f in self.futures]
        return b"" if self.whole is not None else b"".join(results)


def _sha256_of(pieces: Iterable[memoryview]) -> bytes:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return h.digest()


def _crc32_of(pieces: Iterable[memoryview]) -> bytes:
    crc = 0
    for piece in pieces:
        crc = crc32(piece, crc)
    return struct.pack("<I", crc)


_CHECKSUMS: dict[str, Callable[[Iterable[memoryview]], bytes]] = {
    "crc32": _crc32_of,
    "sha256": _sha256_of,
}


def _file_digest(header_bytes: bytes, chunk_digests: bytes) -> str:
    return hashlib.sha256(header_bytes + chunk_digests).hexdigest()


def _write(f: IO[bytes], tensors: Mapping[str, object], metadata: Mapping[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"safetensors metadata must map str to str, got {key!r}: {value!r}")
        if key in _OWN_KEYS:
            raise ValueError(f"metadata key {key!r} is reserved")
    items = []
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        items.append((name, *_host_bytes(name, tensor)))
    items.sort(key=lambda item: -item[1].itemsize)  # keeps every tensor aligned to its itemsize
    own = {
        "distgrad.version": "3",
        "distgrad.chunk_bytes": str(CHUNK_BYTES),
        "distgrad.chunk_checksum": "crc32",
    }
    header: dict[str, Any] = {"__metadata__": {**metadata, **own}}
    offset = 0
    for name, array, data in items:
        header[name] = {
            "dtype": _NAME_OF[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + data.nbytes],
        }
        offset += data.nbytes
    signed = _canonical(header)

    def encoded(digest: str) -> bytes:
        header["__metadata__"]["distgrad.sha256"] = digest
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        return (
            struct.pack("<Q", len(text) + (-(8 + len(text)) % 8))
            + text
            + b" " * (-(8 + len(text)) % 8)
        )

    seekable = _seekable(f)
    with _ChunkHasher(CHUNK_BYTES) as hasher:
        if seekable:  # header first with a placeholder digest of the same length
            start = f.tell()
            f.write(encoded("0" * 64))
            for _, _, data in items:
                view = data.data  # (a memoryview of the bytes)
                hasher.feed(view)
                f.write(view)
            end = f.tell()
            f.seek(start)
            f.write(encoded(_file_digest(signed, hasher.digests())))
            f.seek(end)
        else:
            for _, _, data in items:
                hasher.feed(data.data)
            f.write(encoded(_file_digest(signed, hasher.digests())))
            for _, _, data in items:
                f.write(data.data)


def _seekable(f: IO[bytes]) -> bool:
    try:
        return f.seekable()
    except (AttributeError, ValueError, OSError):
        return False


def save_file(
    tensors: Mapping[str, object],
    file: PathType | IO[bytes],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` (name -> Tensor or numpy array) and string ``metadata`` to ``file``,
    a path (written atomically) or a binary file object."""
    if isinstance(file, (str, bytes, os.PathLike)):
        with atomic_write(file) as f:
            _write(f, tensors, metadata or {})
    else:
        _write(file, tensors, metadata or {})


# ---- reading -----------------------------------------------------------------------------
def _sniff(prefix: bytes) -> str:
    """A hint at what a file that is not a checkpoint is."""
    if prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (
            " It looks like a Python pickle (e.g. written by torch.save or pickle.dump); "
            "distgrad never unpickles, since unpickling can run arbitrary code."
        )
    if prefix.startswith(b"PK\x03\x04"):
        return (
            " It looks like a zip archive (e.g. a PyTorch torch.save file); distgrad "
            "reads only safetensors checkpoints written by distgrad.save."
        )
    return ""


def _unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _is_count(x: object) -> bool:
    return type(x) is int and x >= 0


class _Reader:
    def __init__(self, f: _BinaryReader, name: str):
        self.f, self.name = f, name

    def fail(self, why: str) -> CheckpointError:
        return CheckpointError(f"cannot load checkpoint {self.name}: {why}")

    def read_exact(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            n = self.f.readinto(view[done:])
            if not n:
                raise self.fail("the file ended early: it is truncated")
            done += n

    def header(self, size: int) -> tuple[dict[str, Any], int]:
        """The parsed header and the size of the data section after it."""
        if size == 0:
            raise self.fail("the file is empty")
        prefix = self.f.read(8)
        if size < 8:
            raise self.fail(
                f"the file is only {size} bytes long: it is truncated or not a "
                f"checkpoint." + _sniff(prefix)
            )
        (n,) = struct.unpack("<Q", prefix)
        if n > size - 8 or n > _MAX_HEADER:
            raise self.fail(
                f"the header length field says {n} bytes but the file has "
                f"{size - 8} after it: the file is truncated, corrupted or not a "
                f"checkpoint." + _sniff(prefix)
            )
        raw = self.f.read(n)
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise self.fail(
                f"the header is not valid UTF-8 JSON ({exc}): the file is "
                f"corrupted or not a checkpoint." + _sniff(prefix)
            ) from None
        if not isinstance(header, dict):
            raise self.fail(
                "the header is not a JSON object: the file is corrupted or not a "
                "checkpoint." + _sniff(prefix)
            )
        return header, size - 8 - n

    def entries(
        self, header: dict[str, Any], data_size: int
    ) -> list[tuple[str, np.dtype, tuple[int, ...], int, int]]:
        """Validated (name, dtype, shape, begin, end), in file order."""
        entries = []
        for name, entry in header.items():
            if not isinstance(entry, dict) or set(entry) != _ENTRY_KEYS:
                raise self.fail(f"tensor {name!r} has a malformed entry {entry!r}")
            dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
            if dtype not in _NUMPY_OF:
                hint = " (BF16 needs ml_dtypes: pip install ml_dtypes)" if dtype == "BF16" else ""
                raise self.fail(f"tensor {name!r} has unsupported dtype {dtype!r}{hint}")
            if not isinstance(shape, list) or not all(map(_is_count, shape)):
                raise self.fail(f"tensor {name!r} has an invalid shape {shape!r}")
            if (
                not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(map(_is_count, offsets))
                or offsets[0] > offsets[1]
            ):
                raise self.fail(f"tensor {name!r} has invalid data_offsets {offsets!r}")
            begin, end = offsets
            nbytes = math.prod(shape) * _NUMPY_OF[dtype].itemsize
            if end - begin != nbytes:
                raise self.fail(
                    f"tensor {name!r} of dtype {dtype} and shape {shape} needs "
                    f"{nbytes} bytes but its data_offsets {offsets} span "
                    f"{end - begin}"
                )
            entries.append((name, _NUMPY_OF[dtype], tuple(shape), begin, end))
        entries.sort(key=lambda e: (e[3], e[4]))
        covered, previous = 0, None
        for name, _, _, begin, end in entries:
            if begin < covered:
                raise self.fail(f"the data of tensors {previous!r} and {name!r} overlap")
            if begin > covered:
                raise self.fail(
                    f"bytes [{covered}, {begin}) of the data section belong to no tensor"
                )
            covered, previous = end, name
        if covered != data_size:
            raise self.fail(
                f"the tensors need {covered} bytes of data but the file has "
                f"{data_size}: it is "
                + ("truncated" if covered > data_size else "corrupted (unexpected trailing bytes)")
            )
        return entries

    def metadata(self, header: dict[str, Any]) -> dict[str, str]:
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise self.fail("__metadata__ must map strings to strings")
        return metadata

    def checksum(
        self, header: dict[str, Any], metadata: dict[str, str]
    ) -> tuple[bytes, int | None, str] | None:
        """(the signed canonical header, the chunk size or None for one whole-file hash, the
        chunks' checksum), or None for files of other writers."""
        if not any(k.startswith("distgrad.") for k in metadata):
            return None
        if "distgrad.sha256" not in metadata:
            raise self.fail("its checksum is missing: the header is corrupted")
        unsigned = {k: v for k, v in metadata.items() if k != "distgrad.sha256"}
        signed = _canonical({**header, "__metadata__": unsigned})
        if "distgrad.chunk_bytes" not in metadata:
            return signed, None, "sha256"
        chunk = metadata["distgrad.chunk_bytes"]
        if not chunk.isdigit() or int(chunk) < 1:
            raise self.fail(f"invalid distgrad.chunk_bytes {chunk!r}: the header is corrupted")
        kind = metadata.get("distgrad.chunk_checksum", "sha256")  # version 2: SHA-256 chunks
        if kind not in _CHECKSUMS:
            raise self.fail(
                f"unknown distgrad.chunk_checksum {kind!r} (known: {', '.join(_CHECKSUMS)}): "
                "the header is corrupted or the file comes from a newer distgrad"
            )
        return signed, int(chunk), kind

    def read(
        self, size: int, mapped: memoryview | None = None, verify: bool = True
    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """``mapped``: the whole file, mapped; the arrays are then views of it. ``verify=False``
        skips the file's own checksum (for bytes whose SHA-256 the caller already checked)."""
        header, data_size = self.header(size)
        data_start = size - data_size
        metadata = self.metadata(header)
        check = self.checksum(header, metadata)
        if not verify:
            check = None
        arrays: dict[str, np.ndarray] = {}
        entries = self.entries(header, data_size)
        with _ChunkHasher(*((None,) if check is None else check[1:])) as hasher:
            if check is not None and hasher.whole is not None:  # version 1: one hash, header first
                hasher.whole.update(check[0])
            for name, dtype, shape, begin, end in entries:
                if mapped is not None:
                    raw = mapped[data_start + begin : data_start + end]
                    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
                else:
                    array = np.empty(shape, dtype=dtype.newbyteorder("<"))
                    raw = array.reshape(-1).view(np.uint8).data
                for at in range(0, len(raw), CHUNK_BYTES):  # hashed while the next is read
                    piece = raw[at : at + CHUNK_BYTES]
                    if mapped is None:
                        self.read_exact(piece)
                    if check is not None:
                        hasher.feed(piece)
                if check is None and dtype == np.bool_ and np.any(np.asarray(raw) > 1):
                    raise self.fail(f"bool tensor {name!r} holds bytes other than 0 and 1")
                arrays[name] = array.astype(dtype, copy=False)
            if check is not None:
                digests = hasher.digests()
                if hasher.whole is not None:  # (version 1: chunk None)
                    digest = hasher.whole.hexdigest()
                else:
                    digest = _file_digest(check[0], digests)
                if digest != metadata["distgrad.sha256"]:
                    raise self.fail("checksum mismatch: the file is corrupted")
        return arrays, metadata


def read(
    file: PathType | _BinaryReader, mmap: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file (a path or a binary file object): ``(arrays, metadata)``, with
    ``arrays`` mapping each tensor's name to a numpy array.

    ``mmap=True`` (a path only) maps the file instead of reading it: the arrays are
    copy-on-write views of the file's pages (no copy; the checksum is still verified, through
    the mapping). As with ``torch.load(mmap=True)``, the file must not be truncated or
    rewritten in place while they are alive (replacing it by a rename, as ``save_file`` does, is
    safe)."""
    if isinstance(file, (str, bytes, os.PathLike)):
        with open(file, "rb") as f:
            return _read_open(f, describe(file), mmap)
    if mmap:
        raise ValueError("mmap=True needs a file path, not a file object")
    return _read_open(file, describe(file), False)


def _read_open(
    f: _BinaryReader, name: str, use_mmap: bool, verify: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not f.seekable():
        f = io.BytesIO(f.read())
    start = f.tell()
    size = f.seek(0, io.SEEK_END) - start
    f.seek(start)
    if not use_mmap or size < 8:
        return _Reader(f, name).read(size, None, verify)
    # not closed here: the arrays keep the mapping alive, and it is unmapped with the last one
    mapped = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY)
    return _Reader(f, name).read(size, memoryview(mapped)[start:])


def read_buffer(
    buffer: bytes | bytearray | memoryview, name: str
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Decode a whole safetensors file already in memory (``bytes``/``bytearray``) whose bytes
    the caller has verified (e.g. against a checkpoint manifest's SHA-256): its own checksum is
    not computed again, and the arrays are views of ``buffer`` (writable for a bytearray), so
    nothing is copied."""
    view = memoryview(buffer).cast("B")
    n = struct.unpack("<Q", view[:8])[0] if len(view) >= 8 else 0
    head = bytes(view[: 8 + min(n, max(len(view) - 8, 0))])
    return _Reader(io.BytesIO(head), name).read(len(view), view, verify=False)


def load_file(file: PathType | _BinaryReader) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as a dict of name -> numpy array."""
    return read(file)[0]
