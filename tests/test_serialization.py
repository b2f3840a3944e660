"""distgrad.save / distgrad.load and the safetensors reader/writer: round trips, atomic
writes, and a catalogue of broken files that must raise CheckpointError."""

import collections
import io
import json
import math
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import distgrad as dg
from distgrad import safetensors as st
from distgrad.serialization import CheckpointError

DTYPES = [
    dg.float16,
    dg.float32,
    dg.float64,
    dg.int8,
    dg.uint8,
    dg.int16,
    dg.int32,
    dg.int64,
    dg.bool,
] + ([dg.bfloat16] if dg.bfloat16 is not None else [])


def roundtrip(obj, **load_kwargs):
    buf = io.BytesIO()
    dg.save(obj, buf)
    buf.seek(0)
    return dg.load(buf, **load_kwargs)


def assert_same(a, b):
    """Equal values *and* equal types, recursively; tensors by dtype, shape and values."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dg.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(
            a.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)
        )
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert type(k) is type(next(x for x in b if x == k))
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


def sample_tensor(dtype, shape=(3, 4)):
    values = np.random.default_rng(0).normal(size=shape) * 50
    return dg.tensor(values.astype(np.float64)).to(dtype)


# ---- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3, 4), (1, 0, 3)], ids=str)
def test_tensor_roundtrip_every_dtype_and_shape(dtype, shape):
    t = sample_tensor(dtype, shape)
    assert_same(roundtrip(t), t)
    assert_same(roundtrip({"t": t}), {"t": t})


def test_non_contiguous_tensors():
    base = dg.tensor(np.arange(24, dtype=np.float32).reshape(4, 6))
    views = {
        "transposed": dg.Tensor(base.array.T),
        "strided": dg.Tensor(base.array[::2, 1::3]),
        "reversed": dg.Tensor(base.array[::-1]),
    }
    assert not any(v.is_contiguous() for v in views.values())
    loaded = roundtrip(views)
    for name, v in views.items():
        np.testing.assert_array_equal(loaded[name].numpy(), v.numpy())


def test_nested_state_dict_with_int_keys_is_exactly_equal():
    optimizer_state = {
        "state": {
            0: {"step": 10, "exp_avg": dg.randn(3), "exp_avg_sq": dg.rand(3)},
            1: {"step": 10, "momentum_buffer": None},
        },
        "param_groups": [
            {
                "lr": 1e-3,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "amsgrad": False,
                "params": [0, 1],
                "name": "dense ü",
            }
        ],
    }
    scheduler_state = {
        "last_epoch": 4,
        "_last_lr": [0.001],
        "base_lrs": [0.01],
        "milestones": collections.Counter({3: 1, 6: 1}),
    }
    scheduler_state["milestones"] = dict(scheduler_state["milestones"])
    checkpoint = collections.OrderedDict(
        model=collections.OrderedDict([("fc.weight", dg.randn(2, 3)), ("fc.bias", dg.zeros(2))]),
        optimizer=optimizer_state,
        scheduler=scheduler_state,
        epoch=7,
        misc={
            (1, "a"): [1, 2.0, True, None, "x", (3, [4])],
            None: -0.0,
            2.5: float("inf"),
            True: float("-inf"),
            "nan": float("nan"),
            "big": 2**100,
            "np": np.arange(3),
        },
    )
    loaded = roundtrip(checkpoint)
    assert_same(loaded, checkpoint)
    assert isinstance(loaded["model"], collections.OrderedDict)
    assert list(loaded["optimizer"]["state"]) == [0, 1]
    assert isinstance(loaded["optimizer"]["param_groups"][0]["betas"], tuple)


def test_numpy_scalars_become_python_numbers():
    loaded = roundtrip({"a": np.float32(1.5), "b": np.int64(3), "c": np.bool_(True)})
    assert_same(loaded, {"a": 1.5, "b": 3, "c": True})


def test_requires_grad_and_sharing():
    w = dg.randn(3, requires_grad=True)
    view = dg.Tensor(w.array[:2])
    loaded = roundtrip({"a": w, "b": [w], "view": view})
    assert loaded["a"] is loaded["b"][0]  # one object saved once, loaded as one object
    assert loaded["a"].requires_grad and loaded["a"].is_leaf
    assert not loaded["view"].requires_grad
    np.testing.assert_array_equal(loaded["view"].numpy(), w.detach().numpy()[:2])
    loaded["view"].array[0] = 100  # views are saved separately: no sharing after load
    assert loaded["a"].detach().numpy()[0] != 100


def test_paths_and_file_objects(tmp_path):
    obj = {"x": dg.arange(5), "y": 3}
    dg.save(obj, tmp_path / "a.dgt")  # pathlib
    dg.save(obj, str(tmp_path / "b.dgt"))
    assert_same(dg.load(tmp_path / "a.dgt"), obj)
    assert_same(dg.load(str(tmp_path / "b.dgt")), obj)
    with open(tmp_path / "c.dgt", "wb") as f:
        f.write(b"prefix")
        dg.save(obj, f)
    with open(tmp_path / "c.dgt", "rb") as f:
        assert f.read(6) == b"prefix"
        assert_same(dg.load(f), obj)


def test_unsupported_objects_and_cycles():
    with pytest.raises(
        TypeError,
        match=r"cannot save object at obj\['model'\]\[0\].*"
        r"state_dict",
    ):
        dg.save({"model": [object()]}, io.BytesIO())
    with pytest.raises(TypeError, match="dict key"):
        dg.save({frozenset(): 1}, io.BytesIO())
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        dg.save(loop, io.BytesIO())
    same = [1]
    assert_same(roundtrip([same, same]), [[1], [1]])  # shared but acyclic is fine


def test_tensor_names_in_file_follow_the_structure(tmp_path):
    dg.save(
        {
            "model": {"fc.weight": dg.ones(2)},
            "state": {0: {"exp_avg": dg.zeros(1)}},
            "model.fc": {"weight": dg.zeros(3)},
        },
        tmp_path / "ck",
    )
    assert sorted(st.load_file(tmp_path / "ck")) == [
        "model.fc.weight",
        "model.fc.weight#1",
        "state.0.exp_avg",
    ]


# ---- map_location -------------------------------------------------------------------------
def cuda_saved_file(path):
    """A checkpoint whose tensor says it was saved from cuda:0 (as written on a GPU host)."""
    structure = {
        "tensors": {"w": {"device": "cuda:0", "requires_grad": False}},
        "tree": {"tensor": "w"},
    }
    st.save_file(
        {"w": np.arange(3, dtype=np.float32)}, path, {"distgrad.structure": json.dumps(structure)}
    )


def test_map_location_variants(tmp_path):
    cuda_saved_file(tmp_path / "gpu.dgt")
    for location in ("cpu", dg.device("cpu"), {"cuda:0": "cpu"}):
        t = dg.load(tmp_path / "gpu.dgt", map_location=location)
        assert t.device == dg.device("cpu") and t.tolist() == [0, 1, 2]
    seen = []
    t = dg.load(
        tmp_path / "gpu.dgt", map_location=lambda tensor, saved: seen.append(saved) or tensor * 2
    )
    assert seen == ["cuda:0"] and t.tolist() == [0, 2, 4]
    if not dg.cuda.is_available():
        with pytest.raises(RuntimeError, match="saved on cuda:0.*map_location='cpu'"):
            dg.load(tmp_path / "gpu.dgt")


@pytest.mark.gpu
def test_map_location_cuda(tmp_path):
    dg.save({"w": dg.randn(4)}, tmp_path / "ck")
    loaded = dg.load(tmp_path / "ck", map_location="cuda:0")
    assert loaded["w"].device == dg.device("cuda:0")
    back = dg.load(tmp_path / "ck", map_location=lambda t, saved: t.cuda())
    dg.save(back, tmp_path / "ck2")
    assert dg.load(tmp_path / "ck2")["w"].device == dg.device("cuda:0")
    assert dg.load(tmp_path / "ck2", map_location="cpu")["w"].device == dg.device("cpu")


# ---- interoperability ----------------------------------------------------------------------
def test_foreign_safetensors_files_load_as_flat_dicts(tmp_path):
    st.save_file({"a": np.ones((2, 2), np.float32), "b": np.arange(3)}, tmp_path / "f")
    loaded = dg.load(tmp_path / "f")
    assert sorted(loaded) == ["a", "b"] and loaded["b"].dtype == dg.int64


def test_cross_check_with_the_safetensors_package(tmp_path):
    numpy_api = pytest.importorskip("safetensors.numpy")
    arrays = {
        "w": np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32),
        "mask": np.array([True, False]),
        "step": np.array(7, dtype=np.int64),
        "h": np.arange(4, dtype=np.float16),
        "i8": np.array([-3, 4], dtype=np.int8),
    }
    st.save_file(arrays, tmp_path / "ours", {"note": "x"})
    theirs = numpy_api.load_file(str(tmp_path / "ours"))
    assert sorted(theirs) == sorted(arrays)
    for k in arrays:
        assert theirs[k].dtype == arrays[k].dtype
        np.testing.assert_array_equal(theirs[k], arrays[k])
    numpy_api.save_file(arrays, str(tmp_path / "theirs"), metadata={"format": "np"})
    ours = dg.load(tmp_path / "theirs")
    for k in arrays:
        np.testing.assert_array_equal(ours[k].numpy(), arrays[k])


# ---- atomic writes -------------------------------------------------------------------------
class FailingFile:
    """Wraps a real file and raises ``error`` once ``limit`` bytes have been written."""

    def __init__(self, f, limit, error):
        self.f, self.limit, self.error = f, limit, error

    def write(self, data):
        if self.f.tell() + len(memoryview(data).cast("B")) > self.limit:
            self.f.write(bytes(memoryview(data).cast("B"))[: max(0, self.limit - self.f.tell())])
            raise self.error
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("limit", [0, 5, 100, 2000])
@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "interrupt"],
)
def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch, limit, error):
    path = tmp_path / "model.dgt"
    old = {"w": dg.ones(4), "epoch": 1}
    dg.save(old, path)
    real_fdopen = os.fdopen
    monkeypatch.setattr(
        os, "fdopen", lambda fd, *a, **k: FailingFile(real_fdopen(fd, *a, **k), limit, error)
    )
    with pytest.raises(type(error)):
        dg.save({"w": dg.zeros(1000), "epoch": 2}, path)
    monkeypatch.undo()
    assert_same(dg.load(path), old)
    assert os.listdir(tmp_path) == ["model.dgt"]  # no temporary file left behind


def test_failed_fsync_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.dgt"
    dg.save({"v": 1}, path)

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        dg.save({"v": 2}, path)
    monkeypatch.undo()
    assert dg.load(path) == {"v": 1} and os.listdir(tmp_path) == ["model.dgt"]


def test_save_replaces_through_symlink_and_sets_normal_permissions(tmp_path):
    target = tmp_path / "real.dgt"
    dg.save({"v": 1}, target)
    link = tmp_path / "latest.dgt"
    link.symlink_to(target)
    dg.save({"v": 2}, link)
    assert link.is_symlink() and dg.load(target) == {"v": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path)) == ["latest.dgt", "real.dgt"]


# ---- broken files --------------------------------------------------------------------------
@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ck.dgt"
    dg.save(
        {
            "w": dg.tensor([[1.0, 2.0], [3.0, 4.0]]),
            "b": dg.tensor([True, False]),
            "step": 3,
            "lrs": (0.1, 0.01),
        },
        path,
    )
    return path


def expect_checkpoint_error(path, match=None):
    with pytest.raises(CheckpointError, match=match) as info:
        dg.load(path)
    assert str(path) in str(info.value)  # names the file
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    return str(info.value)


def header_size(path):
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


def test_truncated_anywhere(checkpoint):
    data = checkpoint.read_bytes()
    n = header_size(checkpoint)
    for cut in sorted(
        {0, 1, 7, 8, 9, n // 2, n - 1, n, n + 1, (n + len(data)) // 2, len(data) - 1}
    ):
        checkpoint.write_bytes(data[:cut])
        message = expect_checkpoint_error(checkpoint)
        assert (
            ("empty" in message) if cut == 0 else ("truncated" in message or "corrupted" in message)
        )


def test_every_flipped_byte_is_detected(checkpoint):
    data = checkpoint.read_bytes()
    for i in range(len(data)):
        broken = bytearray(data)
        broken[i] ^= 0xFF
        with pytest.raises(CheckpointError):
            dg.load(io.BytesIO(bytes(broken)))


def test_flipped_data_byte_is_a_checksum_mismatch(checkpoint):
    data = bytearray(checkpoint.read_bytes())
    data[header_size(checkpoint)] ^= 0x01
    checkpoint.write_bytes(bytes(data))
    expect_checkpoint_error(checkpoint, "checksum mismatch")


def test_trailing_bytes(checkpoint):
    checkpoint.write_bytes(checkpoint.read_bytes() + b"\0")
    expect_checkpoint_error(checkpoint, "need 18 bytes of data but the file has 19.*trailing")


def test_absurd_header_length(checkpoint):
    data = bytearray(checkpoint.read_bytes())
    data[:8] = struct.pack("<Q", 2**60)
    checkpoint.write_bytes(bytes(data))
    expect_checkpoint_error(checkpoint, "header length field says 1152921504606846976 bytes")


def test_pickle_renamed_as_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"w": np.ones(3)}))
    expect_checkpoint_error(path, "looks like a Python pickle.*never unpickles")


def test_zip_archive(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"x" * 10)
    expect_checkpoint_error(path, "zip archive")


@pytest.mark.parametrize(
    "content",
    [b"", b"\x01\x02\x03", b"hello world, not a checkpoint", np.random.default_rng(0).bytes(4096)],
    ids=["empty", "tiny", "text", "random"],
)
def test_foreign_files(tmp_path, content):
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    expect_checkpoint_error(path)


def raw_file(tmp_path, header, data=b""):
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize(
    "header,data,match",
    [
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            bytes(12),
            "overlap",
        ),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(4), "truncated"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8), "belong to no"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), "needs 12 bytes"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8), "data_offsets"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), "shape"),
        ({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8), "dtype 'C64'"),
        ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), "malformed entry"),
        ({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x07", "0 and 1"),
        ({"__metadata__": {"k": 1}}, b"", "strings to strings"),
        ([1, 2], b"", "not a JSON object"),
        (b'{"a": 1, "a": 2}', b"", "duplicate keys"),
        (b'{"a": \xff}', b"", "not valid UTF-8 JSON"),
        ({"__metadata__": {"distgrad.version": "1"}}, b"", "checksum is missing"),
    ],
)
def test_crafted_headers(tmp_path, header, data, match):
    expect_checkpoint_error(raw_file(tmp_path, header, data), match)


def test_malformed_structure_is_a_checkpoint_error(tmp_path):
    st.save_file(
        {"w": np.zeros(1)},
        tmp_path / "ck",
        {"distgrad.structure": json.dumps({"tensors": {}, "tree": {"tensor": "w"}})},
    )
    expect_checkpoint_error(tmp_path / "ck", "structure is malformed")
    st.save_file({}, tmp_path / "ck", {"distgrad.structure": "{not json"})
    expect_checkpoint_error(tmp_path / "ck", "structure is malformed")


def test_missing_file_is_a_plain_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        dg.load(tmp_path / "nope.dgt")


def test_safetensors_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        st.save_file({}, tmp_path / "x", {"distgrad.sha256": "0"})
    with pytest.raises(TypeError, match="str to str"):
        st.save_file({}, tmp_path / "x", {"k": 1})
    with pytest.raises(ValueError, match="invalid tensor name"):
        st.save_file({"__metadata__": np.zeros(1)}, tmp_path / "x")
    with pytest.raises(TypeError, match="dtype complex128"):
        st.save_file({"c": np.zeros(1, complex)}, tmp_path / "x")
    assert os.listdir(tmp_path) == []


# ---- chunked checksums, version 1 files, mmap -------------------------------------------------
def _old_header(arrays: dict, metadata: dict):
    """(header, data, canonical header bytes) of a file in an earlier format, unsigned."""
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, a in arrays.items():
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {
            "dtype": {np.float32: "F32", np.float64: "F64"}[a.dtype.type],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        offset += len(raw)
        blobs.append(raw)
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return header, b"".join(blobs), canonical


def _v1_file(path, arrays: dict, metadata=None):
    """A file as version 1 wrote it: one SHA-256 over the canonical header and the data."""
    import hashlib

    meta = {**(metadata or {}), "distgrad.version": "1"}
    header, data, canonical = _old_header(arrays, meta)
    meta["distgrad.sha256"] = hashlib.sha256(canonical + data).hexdigest()
    text = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_version_1_files_still_load_and_are_still_checked(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.ones(5, np.float32)}
    path = _v1_file(tmp_path / "v1.safetensors", arrays)
    got = st.load_file(path)
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name], a)
        assert got[name].dtype == a.dtype
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 1
    path.write_bytes(bytes(raw))
    expect_checkpoint_error(path, "checksum mismatch")


def _v2_file(path, arrays: dict, chunk: int, kind=None):
    """A file as version 2 wrote it: SHA-256 digests of the data's chunks (``kind`` names
    another chunk checksum in the header instead)."""
    import hashlib

    meta = {"distgrad.version": "2", "distgrad.chunk_bytes": str(chunk)}
    if kind is not None:
        meta["distgrad.chunk_checksum"] = kind
    header, data, canonical = _old_header(arrays, meta)
    digests = b"".join(
        hashlib.sha256(data[at : at + chunk]).digest() for at in range(0, len(data), chunk)
    )
    meta["distgrad.sha256"] = hashlib.sha256(canonical + digests).hexdigest()
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_version_2_files_still_load_and_are_still_checked(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.ones(5, np.float32)}
    path = _v2_file(tmp_path / "v2.safetensors", arrays, chunk=16)
    got = st.load_file(path)
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name], a)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 1
    path.write_bytes(bytes(raw))
    expect_checkpoint_error(path, "checksum mismatch")


def test_an_unknown_chunk_checksum_is_refused(tmp_path):
    path = _v2_file(tmp_path / "x.safetensors", {"a": np.arange(3.0)}, chunk=16, kind="md4")
    expect_checkpoint_error(path, "unknown distgrad.chunk_checksum 'md4'")


def test_files_are_written_with_crc32_chunks(tmp_path):
    path = tmp_path / "c.safetensors"
    st.save_file({"a": np.arange(3.0)}, path)
    meta = st.read(path)[1]
    assert (meta["distgrad.version"], meta["distgrad.chunk_checksum"]) == ("3", "crc32")


def test_crc32_is_zlibs_whichever_library_computes_it(tmp_path, monkeypatch):
    """zlib-ng's CRC-32 (used when installed) and zlib's are the same function: a file written
    with either is read and checked with the other."""
    import zlib

    pytest.importorskip("zlib_ng")
    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8)
    for at, end in [(0, len(data)), (1, 4099), (7, 7), (5, (2 << 20) + 3)]:
        assert st.crc32(data[at:end], 17) == zlib.crc32(data[at:end], 17)
    arrays = {"a": data, "b": np.arange(7.0)}
    for write_with, read_with in [(st.crc32, zlib.crc32), (zlib.crc32, st.crc32)]:
        monkeypatch.setattr(st, "crc32", write_with)
        st.save_file(arrays, tmp_path / "x.safetensors")
        monkeypatch.setattr(st, "crc32", read_with)
        got = st.read(tmp_path / "x.safetensors")[0]
        np.testing.assert_array_equal(got["a"], data)


@pytest.mark.parametrize("mmap", [False, True])
def test_every_flipped_byte_is_caught_across_small_chunks(tmp_path, monkeypatch, mmap):
    # chunks of 24 bytes: tensors of 40, 12 and 8 bytes straddle chunk boundaries
    monkeypatch.setattr(st, "CHUNK_BYTES", 24)
    arrays = {"a": np.arange(5.0), "b": np.arange(3, dtype=np.float32), "c": np.ones(2, np.int32)}
    path = tmp_path / "ck.safetensors"
    st.save_file(arrays, path)
    good = path.read_bytes()
    got = st.read(path, mmap=mmap)[0]
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name], a)
    data_start = len(good) - 60
    for at in range(data_start, len(good)):
        raw = bytearray(good)
        raw[at] ^= 0x10
        path.write_bytes(bytes(raw))
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            st.read(path, mmap=mmap)


def test_mmap_load_is_a_copy_on_write_view(tmp_path):
    path = tmp_path / "m.dgt"
    dg.save({"w": dg.arange(4.0), "n": 3}, path)
    loaded = dg.load(path, mmap=True)
    assert loaded["n"] == 3 and loaded["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    loaded["w"].add_(1)  # private to this process: the file is unchanged
    assert dg.load(path)["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    with open(path, "rb") as f, pytest.raises(ValueError, match="needs a file path"):
        st.read(f, mmap=True)


def test_save_to_an_unseekable_file_object(tmp_path):
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.chunks = []

        def writable(self):
            return True

        def write(self, b):
            self.chunks.append(bytes(b))
            return len(b)

    pipe = Pipe()
    dg.save({"w": dg.arange(3.0)}, pipe)
    assert not pipe.seekable()
    assert dg.load(io.BytesIO(b"".join(pipe.chunks)))["w"].tolist() == [0.0, 1.0, 2.0]
