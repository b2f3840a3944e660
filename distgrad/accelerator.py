"""``distgrad.accelerator``: the device-agnostic accelerator API of PyTorch 2.6+.

distgrad's only accelerator is a CUDA GPU through cupy: ``is_available()`` is
``distgrad.cuda.is_available()`` (False without cupy, a driver or a device) and
``current_accelerator()`` is ``device('cuda')`` then, else None (as PyTorch's on a CPU-only
build). Programs that write ``device = torch.accelerator.current_accelerator() if
torch.accelerator.is_available() else torch.device('cpu')`` therefore run on the CPU here
when no GPU is usable.
"""

from __future__ import annotations

from . import cuda as _cuda
from .backend import Device

__all__ = [
    "is_available",
    "current_accelerator",
    "device_count",
    "current_device_index",
    "set_device_index",
    "synchronize",
]


def is_available() -> bool:
    """True when a CUDA GPU can be used (cupy, a driver and a device are there)."""
    return _cuda.is_available()


def current_accelerator(check_available: bool = False) -> Device | None:
    """``device('cuda')`` when a GPU is usable, else None."""
    return Device("cuda") if _cuda.is_available() else None


def device_count() -> int:
    """The number of usable GPUs (0 without one)."""
    return _cuda.device_count() if _cuda.is_available() else 0


def current_device_index() -> int:
    """The current GPU's index; -1 when there is no accelerator, unlike PyTorch's error."""
    return _cuda.current_device() if _cuda.is_available() else -1


def set_device_index(device) -> None:
    """Make GPU ``device`` current (``distgrad.cuda.set_device``)."""
    _cuda.set_device(device)


def synchronize(device=None) -> None:
    """Wait for the GPU's queued work; nothing to wait for without one."""
    if _cuda.is_available():
        _cuda.synchronize(device)
