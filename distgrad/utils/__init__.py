"""Utilities: activation checkpointing and PyTorch's ``torch.utils.data`` path.

``distgrad.utils.checkpoint(fn, *args)`` is the function (as the issue spells it);
``from distgrad.utils.checkpoint import checkpoint, checkpoint_sequential`` (PyTorch's module
path) works too. ``distgrad.utils.data`` is ``distgrad.data`` itself (the same module objects,
submodules included: ``distgrad.utils.data.dataloader is distgrad.data.dataloader``), so
``torch.utils.data.DataLoader`` spelled with distgrad finds the one DataLoader."""

import sys as _sys

from .. import data
from ..data import dataloader as _dataloader
from ..data import dataset as _dataset
from ..data import distributed as _distributed
from ..data import sampler as _sampler
from .checkpoint import checkpoint, checkpoint_sequential

for _module in (data, _dataloader, _dataset, _distributed, _sampler):
    _sys.modules[__name__ + ".data" + _module.__name__[len(data.__name__) :]] = _module
del _module

__all__ = ["checkpoint", "checkpoint_sequential", "data"]
