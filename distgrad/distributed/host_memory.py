"""Keep freed host memory in the process, as a caching allocator does (``fully_shard`` asks).

Sharded data parallel frees and allocates the same large buffers every step (gathered
parameters, gradients handed to reduce-scatters). glibc's malloc gives large blocks back to
the kernel (``munmap``, heap trimming), so each step's new buffers start on fresh pages, and MPI
must map them again (UCX's registration cache is invalidated by every unmap): measured on 2
ranks, filling and reduce-scattering 4 MB took 9.5 ms of CPU from a fresh buffer, 2.8 ms from a
reused one, and 2.8 ms from a fresh one with this setting (benchmarks/README.md). torch keeps freed GPU memory in its caching allocator for the
same reason; on the host, distgrad asks glibc to keep it: blocks up to 32 MiB come from the
heap (``M_MMAP_THRESHOLD``) and the heap is not trimmed (``M_TRIM_THRESHOLD``). Freed memory is
free for later allocations of the process (numpy, tracemalloc and ``estimate()`` count it as
freed); the process's resident size stays at its high-water mark instead of shrinking.

``DISTGRAD_HOST_MEMORY_CACHE=0`` leaves malloc as it is. Other C libraries: nothing happens.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

__all__ = ["HOST_MEMORY_CACHE_ENV", "keep_freed_host_memory"]

HOST_MEMORY_CACHE_ENV = "DISTGRAD_HOST_MEMORY_CACHE"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit systems
_TRIM_THRESHOLD = 2**31 - 1
_done: list = []
_log = logging.getLogger(__name__)


def keep_freed_host_memory() -> bool:
    """Configure glibc's malloc once per process to keep freed memory (see the module);
    returns whether it is configured (False: turned off, or not glibc)."""
    if _done:
        return _done[0]
    value = os.environ.get(HOST_MEMORY_CACHE_ENV, "1").strip().lower()
    ok = False
    if value not in ("0", "false", "no", "off") and platform.libc_ver()[0] == "glibc":
        try:
            mallopt = ctypes.CDLL(None).mallopt
            ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
                mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):
            ok = False
        _log.debug("host memory cache (glibc mallopt): %s", "on" if ok else "failed")
    _done.append(ok)
    return ok
