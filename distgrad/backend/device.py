"""Devices and array modules: numpy on ``cpu``, cupy on ``cuda:i`` (imported lazily)."""

from __future__ import annotations

import numpy as np

__all__ = ["Device", "device", "get_array_module", "array_module_for", "cupy_or_none", "is_array"]

_cupy = None
_cupy_error: str | None = None


def cupy_or_none():
    """The cupy module if it is installed and a CUDA device answers, else None (cached)."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no CUDA device is visible (check CUDA_VISIBLE_DEVICES)")
            _cupy = cupy
        except ImportError:
            _cupy_error = "cupy is not installed (pip install 'distgrad[cuda12]')"
        except Exception as exc:  # no driver, no device
            _cupy_error = f"cupy could not reach a CUDA device: {exc}"
    return _cupy


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used here (``None`` when it can), for error messages."""
    cupy_or_none()
    return _cupy_error


def _current_cuda_index() -> int:
    """The current GPU (``distgrad.cuda.set_device``), as PyTorch's ``"cuda"``; 0 without one."""
    cp = cupy_or_none()
    return 0 if cp is None else cp.cuda.runtime.getDevice()


class Device:
    """Where a tensor lives: ``Device("cpu")`` or ``Device("cuda", index)``; ``"cuda"``
    without an index is the current GPU."""

    __slots__ = ("type", "index")

    def __init__(self, type: str, index: int | None = None):
        if index is None and ":" in type:
            type, _, idx = type.partition(":")
            index = int(idx)
        if type not in ("cpu", "cuda"):
            raise ValueError(f"unknown device type {type!r}; expected 'cpu' or 'cuda[:index]'")
        if type == "cpu":
            index = None
        elif index is None:
            index = _current_cuda_index()
        self.type = type
        self.index = index

    def __repr__(self):
        return f"device(type='{self.type}'" + (
            f", index={self.index})" if self.index is not None else ")"
        )

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    @property
    def xp(self):
        """The array module for this device."""
        if self.type == "cpu":
            return np
        cp = cupy_or_none()
        if cp is None:
            raise RuntimeError(f"cannot use device {self}: {cuda_unavailable_reason()}")
        return cp


CPU = Device("cpu")
_default_device = CPU


def set_default_device(spec) -> None:
    """``distgrad.set_default_device("cuda")``: the device factory functions (``zeros``,
    ``randn``, ``tensor``, ...) use when given no ``device``. ``None`` resets it to the CPU.
    A GPU is checked when set, so a missing one fails here rather than at the next factory."""
    global _default_device
    new = CPU if spec is None else device(spec)
    if new.type != "cpu":
        _ = new.xp  # raises, saying why, when there is no usable GPU
    _default_device = new


def get_default_device() -> Device:
    """The device factory functions use when given none (the CPU unless changed)."""
    return _default_device


def device(spec) -> Device:
    """``distgrad.device("cuda:0")``: build a Device from a string, index or Device."""
    if isinstance(spec, Device):
        return spec
    if isinstance(spec, int):
        return Device("cuda", spec)
    if spec is None:
        return CPU
    return CPU if spec == "cpu" else Device(spec)


def is_array(x) -> bool:
    """Whether ``obj`` is a numpy or cupy array."""
    if isinstance(x, np.ndarray):
        return True
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def get_array_module(*arrays):
    """numpy or cupy, chosen from the arrays themselves (never from a global flag)."""
    for a in arrays:
        if _cupy is not None and isinstance(a, _cupy.ndarray):
            return _cupy
    return np


def array_module_for(array):
    """numpy or cupy, whichever owns ``array``."""
    return np if type(array) is np.ndarray else get_array_module(array)


def device_of(array) -> Device:
    """The :class:`Device` an array lives on."""
    if type(array) is np.ndarray:
        return CPU
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return Device("cuda", array.device.id)
    return CPU
