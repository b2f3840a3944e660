"""``distgrad.cuda``: is a GPU there, which one is current, seeding and memory figures.

Everything works without cupy: ``is_available()`` is then False and the rest raise an error
that says why (cupy not installed, no driver, no device)."""
from __future__ import annotations

from .backend import cuda_unavailable_reason, cupy_or_none
from .backend import random as _random

__all__ = ["is_available", "device_count", "current_device", "set_device", "synchronize",
           "manual_seed", "manual_seed_all", "memory_allocated", "max_memory_allocated",
           "memory_reserved", "get_device_name"]


def _cupy():
    cp = cupy_or_none()
    if cp is None:
        raise RuntimeError(f"CUDA is not available: {cuda_unavailable_reason()}")
    return cp


def is_available() -> bool:
    return cupy_or_none() is not None


def device_count() -> int:
    cp = cupy_or_none()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


def current_device() -> int:
    return _cupy().cuda.Device().id


def set_device(device) -> None:
    index = device if isinstance(device, int) else getattr(device, "index", None)
    if index is None:
        index = int(str(device).partition(":")[2] or 0)
    _cupy().cuda.Device(index).use()


def synchronize(device=None) -> None:
    cp = _cupy()
    if device is None:
        cp.cuda.Device().synchronize()
    else:
        cp.cuda.Device(device if isinstance(device, int) else device.index).synchronize()


def get_device_name(device=None) -> str:
    cp = _cupy()
    index = cp.cuda.Device().id if device is None else int(getattr(device, "index", device))
    return cp.cuda.runtime.getDeviceProperties(index)["name"].decode()


def manual_seed(seed: int) -> None:
    """Seed the GPU stream (distgrad draws random numbers on the host, so this seeds the same
    stream as ``distgrad.manual_seed``)."""
    _random.manual_seed(seed)


manual_seed_all = manual_seed


def memory_allocated(device=None) -> int:
    """Bytes held by tensors in cupy's memory pool."""
    return _cupy().get_default_memory_pool().used_bytes()


def memory_reserved(device=None) -> int:
    """Bytes reserved by cupy's memory pool."""
    return _cupy().get_default_memory_pool().total_bytes()


def max_memory_allocated(device=None) -> int:
    """cupy keeps no high-water mark; this reports the pool's reserved bytes, an upper bound."""
    return memory_reserved(device)
