"""The environment ranks receive from the launcher: the allow-list and ``-x`` options.

The per-rank variables (local rank, threads, GPU) are set by :mod:`.rank_main`
in each process, once mpiexec or srun has placed it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from . import LaunchError

#: Variables forwarded to every rank (remote ranks start from the login environment).
ALLOW_NAMES = ("PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONUNBUFFERED")
#: Prefixes of variables forwarded to every rank: distgrad, threading, CUDA/NCCL/CuPy
#: and the MPI transports (UCX, libfabric, MPICH control variables).
ALLOW_PREFIXES = (
    "DISTGRAD_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "CUDA_",
    "NCCL_",
    "CUPY_",
    "UCX_",
    "FI_",
    "MPIR_CVAR_",
    "TORCHELASTIC_",
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env_options(options: list[str], environ: Mapping[str, str]) -> dict[str, str]:
    """Turn ``-x NAME`` / ``-x NAME=VALUE`` options into ``{NAME: value}``.

    ``-x NAME`` takes the value from ``environ`` and fails when it is unset.
    """
    extra = {}
    for option in options:
        name, eq, value = option.partition("=")
        if not _NAME.match(name):
            raise LaunchError(f"-x {option!r}: {name!r} is not a valid variable name")
        if not eq:
            if name not in environ:
                raise LaunchError(
                    f"-x {name}: {name} is not set here; set it or write -x {name}=VALUE"
                )
            value = environ[name]
        extra[name] = value
    return extra


def forwarded_names(environ: Mapping[str, str], extra: Iterable[str]) -> list[str]:
    """Sorted names of the variables that ranks receive: those in ``environ`` on the
    allow-list, plus the ``extra`` names given with ``-x``."""
    names = {name for name in environ if name in ALLOW_NAMES or name.startswith(ALLOW_PREFIXES)}
    return sorted(names.union(extra))
