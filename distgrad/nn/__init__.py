"""``distgrad.nn``: modules, layers, losses, ``functional`` and ``init``."""
from . import functional
