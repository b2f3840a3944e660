"""The layers of ``distgrad.nn``, one file per kind, at PyTorch's module paths
(``distgrad.nn.modules.linear.Linear``, ``distgrad.nn.modules.loss``, ...).

As in PyTorch, ``nn.modules.module`` and ``nn.modules.container`` name the base class's and
the containers' modules (here ``nn.module`` and ``nn.container``, the same objects), and
``nn.modules.<Layer>`` is ``nn.<Layer>``."""

import sys as _sys

from .. import container, module

_sys.modules[__name__ + ".module"] = module
_sys.modules[__name__ + ".container"] = container


def __getattr__(name):
    # nn.modules.Linear is nn.Linear (resolved lazily: nn is still importing this package)
    if name.startswith("__"):
        raise AttributeError(name)
    nn_namespace = _sys.modules[__name__.rpartition(".")[0]].__dict__
    if name in nn_namespace:
        return nn_namespace[name]
    raise AttributeError(f"module 'distgrad.nn.modules' has no attribute {name!r}")
