"""Grad modes: ``no_grad``, ``enable_grad``, ``set_grad_enabled``, ``inference_mode``.

Each works as a context manager and as a decorator, and is thread-local as in PyTorch.
"""

from __future__ import annotations

import copy
import functools
import threading

__all__ = [
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "inference_mode",
    "is_grad_enabled",
    "is_inference_mode_enabled",
]


class _State(threading.local):
    def __init__(self):
        self.grad_enabled = True
        self.inference = False


_state = _State()


def is_grad_enabled() -> bool:
    """Whether operations are recorded for autograd in this thread."""
    return _state.grad_enabled


def is_inference_mode_enabled() -> bool:
    """Whether inference mode is on in this thread."""
    return _state.inference


class _GradModeContext:
    """Base for the grad-mode context managers; subclasses set ``_target``."""

    _target_grad: bool = True
    _target_inference: bool | None = None

    def __enter__(self):
        self._prev = (_state.grad_enabled, _state.inference)
        _state.grad_enabled = self._target_grad
        if self._target_inference is not None:
            _state.inference = self._target_inference
        return self

    def __exit__(self, *exc):
        _state.grad_enabled, _state.inference = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with copy.copy(self):  # a fresh copy per call keeps re-entrant calls independent
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradModeContext):
    """Disable gradient recording: results of ops do not require grad."""

    _target_grad = False


class enable_grad(_GradModeContext):
    """Enable gradient recording inside a ``no_grad`` region."""

    _target_grad = True


class set_grad_enabled(_GradModeContext):
    """Set gradient recording on or off. Takes effect immediately, as in PyTorch, so it also
    works as a plain function call; as a context manager it restores the previous mode."""

    def __init__(self, mode: bool):
        self._prev = (_state.grad_enabled, _state.inference)
        self._target_grad = bool(mode)
        _state.grad_enabled = bool(mode)

    def __enter__(self):
        _state.grad_enabled = self._target_grad
        return self

    def __call__(self, fn):
        _state.grad_enabled = self._prev[0]  # used as a decorator: do not change the mode now
        return super().__call__(fn)


class inference_mode(_GradModeContext):
    """Like ``no_grad`` and marks the region as inference. distgrad's tensors carry no extra
    inference flag (PyTorch's inference tensors exist to skip version counting, which costs
    distgrad nothing), so this differs from ``no_grad`` only in ``is_inference_mode_enabled()``."""

    def __init__(self, mode: bool = True):
        self._target_grad = not mode
        self._target_inference = bool(mode)
