"""``distgrad.save`` / ``distgrad.load``: checkpoints that never execute code when loaded.

A checkpoint is one safetensors file (``distgrad.safetensors``): the tensors are the file's
tensors, and the structure around them is JSON in the metadata key ``distgrad.structure``. The
file carries a SHA-256 checksum of header and data, so truncation or corruption anywhere is
reported as a ``CheckpointError`` naming the file; saving to a path is atomic (a failed save
leaves the previous file intact and no temporary file behind).

What can be saved: nested ``dict``, ``OrderedDict``, ``list`` and ``tuple`` of Tensors, numpy
arrays and plain values (``int``, ``float`` including nan/inf, ``bool``, ``str``, ``None``); dict
keys may be plain values or tuples of them. ``load(save(obj)) == obj`` with types preserved:
int keys stay ints (optimizer states), tuples stay tuples, lists lists, ``OrderedDict``
``OrderedDict``, bools bools, ints ints, floats floats. Not preserved: namedtuples (load as
tuples), other dict subclasses (load as dicts), numpy scalars (saved as the Python numbers they
equal). Anything else raises ``TypeError`` naming where it is (save ``model.state_dict()``, not
the model). Reference cycles raise ``ValueError``.

Tensors are written contiguously (non-contiguous ones are copied), with their dtype, shape,
``requires_grad`` and device; their names in the file are their paths in the structure (e.g.
``state.0.exp_avg``), so other safetensors readers see meaningful names. ``.grad`` and autograd
history are not saved. The same Tensor (or numpy array) object appearing several times is saved
once and loads as one object; distinct tensors that share memory (views) are saved separately
and load as independent tensors.

The structure JSON is ``{"tensors": {name: {"device": "cpu", "requires_grad": false}, ...},
"tree": node}``, where a node is ``null``, a bool, an int, a finite float, a string, a list of
nodes, or a one-key object: ``{"tuple": [node, ...]}``, ``{"dict": [[key, node], ...]}``,
``{"odict": [[key, node], ...]}`` (keys are nodes too, so their types survive),
``{"float": "nan" | "inf" | "-inf"}``, ``{"tensor": name}`` or ``{"ndarray": name}``.

A safetensors file from another writer (no ``distgrad.structure``) loads as a flat dict of
name -> Tensor."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np

from .autograd import Tensor
from .backend import Device
from .backend import device as make_device
from .safetensors import CheckpointError, _read_open, describe, read, save_file

__all__ = ["save", "load", "CheckpointError"]

_STRUCTURE = "distgrad.structure"
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def _where(path: tuple) -> str:
    return "obj" + "".join(f"[{p!r}]" for p in path)


class _Encoder:
    """Turns an object into a JSON-able tree, collecting its arrays by name."""

    def __init__(self):
        self.arrays = {}  # name in the file -> Tensor or numpy array
        self.tensors = {}  # name -> {"device": ..., "requires_grad": ...} of each Tensor
        self.names = {}  # id(object) -> name, so shared objects are stored once
        self.open = set()  # ids of the containers being encoded, to catch cycles

    def name_for(self, obj, path: tuple) -> str:
        if id(obj) not in self.names:
            base = ".".join(map(str, path)) or "tensor"
            name, n = base, 1
            while name in self.arrays or name == "__metadata__":
                name, n = f"{base}#{n}", n + 1
            self.arrays[name] = obj
            self.names[id(obj)] = name
        return self.names[id(obj)]

    def key(self, key, path: tuple):
        if isinstance(key, tuple):
            return {"tuple": [self.key(k, path) for k in key]}
        if key is None or isinstance(key, (bool, int, float, str)):
            return self.encode(key, path)
        raise TypeError(
            f"distgrad.save: dict key {key!r} of type {type(key).__name__} at "
            f"{_where(path)} is not supported; keys must be str, int, float, bool, "
            f"None or tuples of them"
        )

    def encode(self, obj, path: tuple = ()):
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else {"float": repr(float(obj))}
        if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
            return self.encode(obj.item(), path)
        if isinstance(obj, Tensor):
            name = self.name_for(obj, path)
            self.tensors[name] = {"device": str(obj.device), "requires_grad": obj.requires_grad}
            return {"tensor": name}
        if isinstance(obj, np.ndarray):
            return {"ndarray": self.name_for(obj, path)}
        if not isinstance(obj, (dict, list, tuple)) and hasattr(obj, "state_dict"):
            kind = type(obj).__name__
            raise TypeError(
                f"distgrad.save: cannot save a whole {kind} object (at {_where(path)}): distgrad "
                f"checkpoints hold tensors, not pickled Python objects, which would run code "
                f"when loaded. Save its state instead: distgrad.save(model.state_dict(), "
                f"path), and restore it into a newly built {kind} with "
                f"model.load_state_dict(distgrad.load(path))."
            )
        if not isinstance(obj, (dict, list, tuple)):
            raise TypeError(
                f"distgrad.save: cannot save {type(obj).__name__} at "
                f"{_where(path)}; checkpoints hold dicts, lists and tuples of "
                f"Tensors, numpy arrays, int, float, bool, str and None (save a "
                f"module's or optimizer's state_dict(), not the object)"
            )
        if id(obj) in self.open:
            raise ValueError(
                f"distgrad.save: {_where(path)} contains itself; checkpoints "
                f"cannot hold reference cycles"
            )
        self.open.add(id(obj))
        try:
            if isinstance(obj, dict):
                tag = "odict" if isinstance(obj, OrderedDict) else "dict"
                return {
                    tag: [[self.key(k, path), self.encode(v, path + (k,))] for k, v in obj.items()]
                }
            items = [self.encode(v, path + (i,)) for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else {"tuple": items}
        finally:
            self.open.discard(id(obj))


def save(obj, f) -> None:
    """Save ``obj`` (typically a ``state_dict()``, or a dict of them) to ``f``, a path or a
    binary file object. See the module docstring for what is kept."""
    encoder = _Encoder()
    tree = encoder.encode(obj)
    structure = {"tensors": encoder.tensors, "tree": tree}
    save_file(
        encoder.arrays,
        f,
        {_STRUCTURE: json.dumps(structure, separators=(",", ":"), allow_nan=False)},
    )


def _placer(map_location):
    """``place(array, saved_device) -> Tensor`` for a ``map_location`` argument."""
    if map_location is None:

        def place(array, saved):
            try:
                return Tensor(array).to(saved)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"distgrad.load: a tensor was saved on {saved}, which is "
                    f"not available here ({exc}); pass map_location='cpu' to "
                    f"load it on the CPU"
                ) from exc

        return place
    if isinstance(map_location, dict):
        return lambda array, saved: Tensor(array).to(map_location.get(saved, saved))
    if callable(map_location) and not isinstance(map_location, Device):
        return lambda array, saved: map_location(Tensor(array), saved)
    target = make_device(map_location)
    return lambda array, saved: Tensor(array).to(target)


def _decode(node, tensors: dict, arrays: dict):
    """Rebuild the object from its JSON tree; ``tensors`` and ``arrays`` map names to the
    loaded values."""
    if isinstance(node, list):
        return [_decode(x, tensors, arrays) for x in node]
    if not isinstance(node, dict):
        return node
    ((tag, value),) = node.items()
    if tag in ("dict", "odict"):
        pairs = ((_decode(k, tensors, arrays), _decode(v, tensors, arrays)) for k, v in value)
        return OrderedDict(pairs) if tag == "odict" else dict(pairs)
    if tag == "tuple":
        return tuple(_decode(x, tensors, arrays) for x in value)
    if tag == "float":
        return float(value)
    if tag == "tensor":
        return tensors[value]
    if tag == "ndarray":
        return arrays[value]
    raise ValueError(f"unknown tag {tag!r}")


def _placed(place, array, device: str, requires_grad: bool):
    t = place(array, device)
    if requires_grad and isinstance(t, Tensor) and t.is_leaf:
        t.requires_grad_(True)
    return t


def load(f, map_location=None, *, weights_only: bool = True, mmap: bool | None = None):
    """Load what ``save`` wrote to ``f`` (a path or a binary file object).

    ``map_location``: None puts every tensor back on the device it was saved from; a device
    (``"cpu"``, ``"cuda:0"``, a ``Device``, an index) puts all of them there; a dict maps saved
    device names to new ones (``{"cuda:1": "cuda:0"}``); a callable
    ``(cpu_tensor, saved_device_name) -> tensor`` decides per tensor. ``weights_only`` is
    accepted for PyTorch compatibility: distgrad checkpoints only ever hold data. ``mmap=True``
    (``f`` a path) maps the file instead of reading it, as in PyTorch: CPU tensors are then
    copy-on-write views of its pages (see ``distgrad.safetensors.read``)."""
    return _load(f, map_location, bool(mmap), True)


def _load(f, map_location, mmap: bool, verify: bool):
    """``load``; ``verify=False`` (a file object whose SHA-256 the caller has checked, e.g.
    against a checkpoint manifest) skips the file's own checksum, so it is hashed once."""
    if verify:
        arrays, metadata = read(f, mmap=mmap)
    else:
        arrays, metadata = _read_open(f, describe(f), False, verify=False)
    place = _placer(map_location)
    if _STRUCTURE not in metadata:
        return {name: place(array, "cpu") for name, array in arrays.items()}

    def malformed(exc):
        return CheckpointError(
            f"cannot load checkpoint {describe(f)}: its structure is "
            f"malformed ({type(exc).__name__}: {exc})"
        )

    try:
        structure = json.loads(metadata[_STRUCTURE])
        specs = {
            name: (arrays[name], str(spec["device"]), bool(spec["requires_grad"]))
            for name, spec in structure["tensors"].items()
        }
        tree = structure["tree"]
    except _MALFORMED as exc:
        raise malformed(exc) from None
    tensors = {name: _placed(place, *spec) for name, spec in specs.items()}
    try:
        return _decode(tree, tensors, arrays)
    except _MALFORMED as exc:
        raise malformed(exc) from None
