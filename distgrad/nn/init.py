"""``nn.init``: in-place initialisers with PyTorch's formulas and gains."""

from __future__ import annotations

import math
import warnings

from ..autograd import Tensor, no_grad

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "constant_",
    "zeros_",
    "ones_",
    "eye_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "trunc_normal_",
    "orthogonal_",
]


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    linear = (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    )
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _fans(tensor):
    if tensor.ndim < 2:
        raise ValueError(
            f"Fan in and fan out can not be computed for tensor with fewer than 2 "
            f"dimensions (got shape {list(tensor.shape)})"
        )
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    fan_in, fan_out = _fans(tensor)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill ``tensor`` in place with samples from U(``a``, ``b``); return it."""
    with no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill ``tensor`` in place with samples from N(``mean``, ``std**2``); return it."""
    with no_grad():
        return tensor.normal_(mean, std, generator=generator)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal samples redrawn until they lie in [a, b]."""
    from ..backend import random as _random

    rng = (generator or _random.default_generator).numpy
    import numpy as np

    values = rng.normal(mean, std, tensor.shape)
    bad = (values < a) | (values > b)
    while bad.any():
        values[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (values < a) | (values > b)
    with no_grad():
        return tensor.copy_(Tensor(np.asarray(values)))


def constant_(tensor, val: float):
    """Fill ``tensor`` with ``val`` in place; return it."""
    with no_grad():
        return tensor.fill_(val)


def zeros_(tensor):
    """Fill ``tensor`` with zeros in place; return it."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill ``tensor`` with ones in place; return it."""
    return constant_(tensor, 1.0)


def eye_(tensor):
    """Fill a 2-D ``tensor`` with the identity matrix in place; return it."""
    import numpy as np

    if tensor.ndim != 2:
        raise ValueError(
            f"Only tensors with 2 dimensions are supported, got shape {list(tensor.shape)}"
        )
    with no_grad():
        return tensor.copy_(Tensor(np.eye(*tensor.shape)))


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot uniform: U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``; return ``tensor``."""
    fan_in, fan_out = _fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot normal: N(0, ``std**2``) with ``std = gain * sqrt(2 / (fan_in + fan_out))``; return ``tensor``."""
    fan_in, fan_out = _fans(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _zero_elements(tensor) -> bool:
    """True (with PyTorch's warning) for a tensor with no elements: nothing to initialise."""
    if tensor.numel() == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def kaiming_uniform_(
    tensor, a: float = 0, mode: str = "fan_in", nonlinearity="leaky_relu", generator=None
):
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)`` (``fan`` per ``mode``, gain per ``nonlinearity``); return ``tensor``."""
    if _zero_elements(tensor):
        return tensor
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(tensor, mode))
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(
    tensor, a: float = 0, mode: str = "fan_in", nonlinearity="leaky_relu", generator=None
):
    """He normal: N(0, ``std**2``) with ``std = gain / sqrt(fan)`` (``fan`` per ``mode``, gain per ``nonlinearity``); return ``tensor``."""
    if _zero_elements(tensor):
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor, gain: float = 1.0, generator=None):
    """Fill ``tensor`` (at least 2-D) with a (semi-)orthogonal matrix scaled by ``gain``; return it."""
    import numpy as np

    from ..backend import random as _random

    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = (generator or _random.default_generator).numpy.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    with no_grad():
        return tensor.copy_(Tensor(np.ascontiguousarray(gain * q).reshape(tensor.shape)))


def dirac_(tensor, groups: int = 1):
    """The identity for convolutions: a 3-, 4- or 5-D weight that passes each input channel
    through unchanged (per group)."""
    import numpy as np

    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    sizes = tensor.shape
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    out_per_group = sizes[0] // groups
    min_dim = min(out_per_group, sizes[1])
    w = np.zeros(sizes)
    centre = tuple(s // 2 for s in sizes[2:])
    for g in range(groups):
        for d in range(min_dim):
            w[(g * out_per_group + d, d) + centre] = 1
    with no_grad():
        return tensor.copy_(Tensor(w))


def sparse_(tensor, sparsity: float, std: float = 0.01, generator=None):
    """A 2-D weight drawn from N(0, std) with a fraction ``sparsity`` of each column zeroed."""
    import numpy as np

    from ..backend import random as _random

    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    rows, cols = tensor.shape
    rng = (generator or _random.default_generator).numpy
    w = rng.normal(0.0, std, (rows, cols))
    zeros = int(math.ceil(sparsity * rows))
    for c in range(cols):
        w[rng.permutation(rows)[:zeros], c] = 0
    with no_grad():
        return tensor.copy_(Tensor(np.asarray(w)))


def _deprecated(new):
    def old(*args, **kwargs):
        warnings.warn(
            f"`nn.init.{new.__name__[:-1]}` is now deprecated in favor of "
            f"`nn.init.{new.__name__}`.",
            FutureWarning,
            stacklevel=2,
        )
        return new(*args, **kwargs)

    old.__name__ = new.__name__[:-1]
    old.__doc__ = f"Deprecated alias of ``{new.__name__}``."
    return old


uniform = _deprecated(uniform_)
normal = _deprecated(normal_)
constant = _deprecated(constant_)
eye = _deprecated(eye_)
dirac = _deprecated(dirac_)
xavier_uniform = _deprecated(xavier_uniform_)
xavier_normal = _deprecated(xavier_normal_)
kaiming_uniform = _deprecated(kaiming_uniform_)
kaiming_normal = _deprecated(kaiming_normal_)
orthogonal = _deprecated(orthogonal_)
sparse = _deprecated(sparse_)

__all__ += ["dirac_", "sparse_"]
