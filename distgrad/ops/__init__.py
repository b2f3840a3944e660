"""The ops layer: every differentiable op, forward and backward side by side, one file per
family. Importing it installs the operators and methods of ``Tensor``."""

from . import (
    activation,
    conv,
    conversion,
    creation,
    elementwise,
    indexing,
    legacy,
    linalg,
    loss,
    normalization,
    pool,
    reduction,
    shape,
    sorting,
)
from ._helpers import graph_xp
from .activation import *  # noqa: F401,F403
from .conversion import *  # noqa: F401,F403
from .creation import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .legacy import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .sorting import *  # noqa: F401,F403

__all__ = [
    name
    for module in (
        activation,
        conversion,
        creation,
        elementwise,
        indexing,
        legacy,
        linalg,
        reduction,
        shape,
        sorting,
    )
    for name in module.__all__
]
