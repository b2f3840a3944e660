"""The ``distgrad`` logger: where the library's diagnostics go.

Every module logs through ``logging.getLogger(__name__)``, so all records fall under the
``distgrad`` logger. At import it gets one handler that writes to stderr, with the rank in each
line once it is known::

    [rank 1] WARNING distgrad.checkpoint.store: could not prune 'ckpt-40' in 'runs/x': ...

- ``DISTGRAD_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING`` (default), ``ERROR``, or a number)
  sets the level; ``set_log_level`` changes it at run time, or use the standard
  ``logging.getLogger("distgrad").setLevel(...)``.
- The rank is taken from the launcher's variables at import (``RANK``, ``PMI_RANK``,
  ``OMPI_COMM_WORLD_RANK``, ``SLURM_PROCID``) and set by ``distgrad.distributed.init`` from
  MPI (``set_log_rank``). Each record carries it as ``record.rank`` (``None`` in a plain
  single process; a record factory adds it), so a handler of your own can use ``%(rank)s``.
- The handler is distgrad's own and the logger does not propagate to the root logger (as
  PyTorch's ``torch`` logger); to route records into your application's logging instead, call
  ``use_application_logging()``.

The rule: diagnostics (what the library does or meets on its own: environment, cleanup
failures, retries, progress) go to this logger; a warning about how the API was called
(deprecated arguments, surprising semantics, a fallback the caller asked for) stays a
``warnings.warn``, as in PyTorch, so that ``warnings`` filters and ``pytest.warns`` see it.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LEVEL_ENV", "set_log_level", "set_log_rank", "log_rank", "use_application_logging"]

LEVEL_ENV = "DISTGRAD_LOG_LEVEL"
_RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
_FORMAT = "%(rank_prefix)s%(levelname)s %(name)s: %(message)s"

_logger = logging.getLogger("distgrad")
_rank: int | None = None


def _install_record_factory() -> None:
    """Give every record of the ``distgrad`` tree ``rank`` and ``rank_prefix`` attributes."""
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        if record.name == "distgrad" or record.name.startswith("distgrad."):
            record.rank = _rank
            record.rank_prefix = "[distgrad] " if _rank is None else f"[rank {_rank}] "
        return record

    factory._distgrad = True  # type: ignore[attr-defined]
    if not getattr(previous, "_distgrad", False):
        logging.setLogRecordFactory(factory)


def _parse_level(value: str) -> int:
    text = value.strip().upper()
    if text.lstrip("-").isdigit():
        return int(text)
    level = logging.getLevelName(text)
    if not isinstance(level, int):
        raise ValueError(
            f"{LEVEL_ENV}={value!r} is not a logging level: use DEBUG, INFO, WARNING, ERROR, "
            f"CRITICAL or a number"
        )
    return level


def set_log_level(level: int | str) -> None:
    """Set the level of the ``distgrad`` logger (a name such as ``"INFO"`` or a number)."""
    _logger.setLevel(_parse_level(str(level)) if isinstance(level, str) else int(level))


def set_log_rank(rank: int | None) -> None:
    """Set the rank shown in every record of this process (``None``: no rank)."""
    global _rank
    _rank = None if rank is None else int(rank)


def log_rank() -> int | None:
    """The rank shown in this process's records (``None`` before it is known)."""
    return _rank


def use_application_logging() -> None:
    """Drop distgrad's own handler and let records propagate to the root logger's handlers.

    The rank stays available to their formatters as ``%(rank)s``."""
    for handler in list(_logger.handlers):
        if getattr(handler, "_distgrad", False):
            _logger.removeHandler(handler)
    _logger.propagate = True


def _rank_from_environment() -> int | None:
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _configure() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler._distgrad = True  # type: ignore[attr-defined]
    _logger.addHandler(handler)
    _install_record_factory()
    _logger.propagate = False
    _logger.setLevel(_parse_level(os.environ.get(LEVEL_ENV, "WARNING")))
    set_log_rank(_rank_from_environment())


if not any(getattr(h, "_distgrad", False) for h in _logger.handlers):
    _configure()
