"""``distgrad.cuda``: is a GPU there, which one is current, seeding and memory figures.

Everything works without cupy: ``is_available()`` is then False and the rest raise an error
that says why (cupy not installed, no driver, no device)."""

from __future__ import annotations

import sys as _sys
import types as _types

from .backend import cuda_unavailable_reason, cupy_or_none
from .backend import device as _make_device
from .backend import random as _random

__all__ = [
    "is_available",
    "device_count",
    "current_device",
    "set_device",
    "synchronize",
    "manual_seed",
    "manual_seed_all",
    "memory_allocated",
    "max_memory_allocated",
    "memory_reserved",
    "mem_get_info",
    "get_device_name",
]


def _cupy():
    cp = cupy_or_none()
    if cp is None:
        raise RuntimeError(f"CUDA is not available: {cuda_unavailable_reason()}")
    return cp


def is_available() -> bool:
    """Whether cupy is installed and a CUDA device answers."""
    return cupy_or_none() is not None


def device_count() -> int:
    """The number of CUDA devices visible (0 without cupy)."""
    cp = cupy_or_none()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


def current_device() -> int:
    """The index of the current CUDA device."""
    return _cupy().cuda.runtime.getDevice()


def _index(device) -> int:
    """The GPU index of ``device`` (an int, ``"cuda:i"``, a ``distgrad.device`` or None for
    the current one)."""
    if device is None:
        return current_device()
    if isinstance(device, int):
        return device
    resolved = _make_device(device)
    if resolved.type != "cuda":
        raise ValueError(f"expected a CUDA device, got {resolved}")
    return int(resolved.index or 0)


def set_device(device) -> None:
    """Make ``device`` the current GPU: ``"cuda"``/``device="cuda"`` then mean this one."""
    _cupy().cuda.Device(_index(device)).use()


def synchronize(device=None) -> None:
    """Wait until every kernel queued on ``device`` (default: the current GPU) has finished."""
    _cupy().cuda.Device(_index(device)).synchronize()


def get_device_name(device=None) -> str:
    """The name of CUDA device ``device`` (default: the current one)."""
    name = _cupy().cuda.runtime.getDeviceProperties(_index(device))["name"]
    return name.decode() if isinstance(name, bytes) else name


def manual_seed(seed: int) -> None:
    """Seed the GPU stream (distgrad draws random numbers on the host, so this seeds the same
    stream as ``distgrad.manual_seed``)."""
    _random.manual_seed(seed)


manual_seed_all = manual_seed


def _pool(device):
    """cupy's default memory pool and the device whose figures to read."""
    cp = _cupy()
    return cp.get_default_memory_pool(), cp.cuda.Device(_index(device))


def memory_allocated(device=None) -> int:
    """Bytes held by tensors in cupy's memory pool on ``device`` (default: current GPU)."""
    pool, dev = _pool(device)
    with dev:
        return pool.used_bytes()


def memory_reserved(device=None) -> int:
    """Bytes reserved by cupy's memory pool on ``device`` (default: current GPU)."""
    pool, dev = _pool(device)
    with dev:
        return pool.total_bytes()


def max_memory_allocated(device=None) -> int:
    """cupy keeps no high-water mark; this reports the pool's reserved bytes, an upper bound."""
    return memory_reserved(device)


def mem_get_info(device=None) -> tuple:
    """``(free, total)`` bytes of the GPU, as the driver reports them."""
    with _cupy().cuda.Device(_index(device)):
        return tuple(_cupy().cuda.runtime.memGetInfo())


class _AmpModule(_types.ModuleType):
    """``distgrad.cuda.amp``: PyTorch's older spelling of ``amp`` for CUDA.

    ``autocast(enabled=True, dtype=float16, cache_enabled=True)`` is ``distgrad.amp.autocast``
    with ``device_type="cuda"``; ``GradScaler`` is ``distgrad.amp.GradScaler``. Resolved on
    first use, as ``distgrad.amp`` sits in a layer above this module."""

    def __getattr__(self, name):
        from . import amp as _amp

        if name == "autocast":

            class autocast(_amp.autocast):
                """``torch.cuda.amp.autocast``: ``amp.autocast("cuda", ...)``."""

                def __init__(self, enabled=True, dtype=None, cache_enabled=True):
                    super().__init__("cuda", dtype=dtype, enabled=enabled)

            value = autocast
        elif name in ("GradScaler", "custom_fwd", "custom_bwd"):
            value = getattr(_amp, name)
        else:
            raise AttributeError(f"module 'distgrad.cuda.amp' has no attribute {name!r}")
        setattr(self, name, value)
        return value


amp = _AmpModule("distgrad.cuda.amp", _AmpModule.__doc__)
_sys.modules[amp.__name__] = amp
