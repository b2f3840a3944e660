"""``nn.utils.parametrizations``: ``weight_norm`` as a parametrization (PyTorch's current
API; the state dict holds ``parametrizations.weight.original0`` (g) and ``original1`` (v))."""

from __future__ import annotations

from ..module import Module
from . import parametrize

__all__ = ["weight_norm"]


def norm_except_dim(v, pow: float = 2, dim: int = 0):
    """The ``pow``-norm of ``v`` over every dim but ``dim`` (kept as size-1 dims); the norm of
    all of ``v`` for ``dim=-1``."""
    if dim == -1:
        return (v.abs() ** pow).sum() ** (1.0 / pow)
    dim = dim % v.ndim
    others = tuple(d for d in range(v.ndim) if d != dim)
    if not others:
        return v.abs()
    return (v.abs() ** pow).sum(others, keepdim=True) ** (1.0 / pow)


class _WeightNorm(Module):
    """``weight = g * v / ||v||`` (norm over all dims but ``dim``)."""

    def __init__(self, dim: int | None = 0):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g, weight_v):
        """``v * (g / ||v||)``."""
        return weight_v * (weight_g / norm_except_dim(weight_v, 2, self.dim))

    def right_inverse(self, weight):
        """``(g, v) = (||weight||, weight)``."""
        return norm_except_dim(weight, 2, self.dim), weight


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0) -> Module:
    """Reparametrize ``module.<name>`` as magnitude ``g`` times direction ``v / ||v||``."""
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    return module
