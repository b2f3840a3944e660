"""Utilities: activation checkpointing. ``distgrad.utils.checkpoint(fn, *args)`` is the
function (as the issue spells it); ``from distgrad.utils.checkpoint import checkpoint,
checkpoint_sequential`` (PyTorch's module path) works too."""

from .checkpoint import checkpoint, checkpoint_sequential

__all__ = ["checkpoint", "checkpoint_sequential"]
