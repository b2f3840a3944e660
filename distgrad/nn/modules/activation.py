"""Activation functions as modules (``ReLU``, ``GELU``, ``Softmax``, ...)."""

from __future__ import annotations

from ... import ops
from .. import functional as F
from ..module import Module
from ..parameter import Parameter

__all__ = [
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "SELU",
    "GELU",
    "SiLU",
    "Mish",
    "Softplus",
    "Tanh",
    "Sigmoid",
    "Hardtanh",
    "Hardsigmoid",
    "Hardswish",
    "LogSigmoid",
    "Softsign",
    "Softmax",
    "LogSoftmax",
    "Threshold",
    "CELU",
    "GLU",
    "Hardshrink",
    "Softshrink",
    "Tanhshrink",
    "Softmin",
    "Softmax2d",
    "RReLU",
    "PReLU",
]


def _activation(name, fn, params=(), doc=None):
    """A module class calling ``fn(input, **params)`` with constructor-given parameters."""
    names = [p[0] for p in params]
    defaults = dict(params)

    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        kwargs.pop("inplace", None)
        values = dict(defaults)
        values.update(zip(names, args))
        unknown = set(kwargs) - set(names)
        if unknown:
            raise TypeError(f"{name}() got unexpected arguments {sorted(unknown)}")
        values.update(kwargs)
        for k, v in values.items():
            setattr(self, k, v)

    def forward(self, input):
        return fn(input, **{k: getattr(self, k) for k in names})

    def extra_repr(self):
        return ", ".join(f"{k}={getattr(self, k)}" for k in names)

    forward.__doc__ = f"Apply {name} to ``input`` elementwise."
    extra_repr.__doc__ = Module.extra_repr.__doc__

    return type(
        name,
        (Module,),
        {
            "__init__": __init__,
            "forward": forward,
            "extra_repr": extra_repr,
            "__doc__": doc or f"Applies the {name} function elementwise (see ``nn.functional``).",
            "__module__": __name__,
        },
    )


ReLU = _activation("ReLU", lambda x: F.relu(x))
ReLU6 = _activation("ReLU6", lambda x: F.relu6(x))
LeakyReLU = _activation(
    "LeakyReLU",
    lambda x, negative_slope: F.leaky_relu(x, negative_slope),
    [("negative_slope", 0.01)],
)
ELU = _activation("ELU", lambda x, alpha: F.elu(x, alpha), [("alpha", 1.0)])
SELU = _activation("SELU", lambda x: F.selu(x))
GELU = _activation(
    "GELU", lambda x, approximate: F.gelu(x, approximate=approximate), [("approximate", "none")]
)
SiLU = _activation("SiLU", lambda x: F.silu(x))
Mish = _activation("Mish", lambda x: F.mish(x))
Softplus = _activation(
    "Softplus",
    lambda x, beta, threshold: F.softplus(x, beta, threshold),
    [("beta", 1.0), ("threshold", 20.0)],
)
Tanh = _activation("Tanh", lambda x: F.tanh(x))
Sigmoid = _activation("Sigmoid", lambda x: F.sigmoid(x))
Hardtanh = _activation(
    "Hardtanh",
    lambda x, min_val, max_val: F.hardtanh(x, min_val, max_val),
    [("min_val", -1.0), ("max_val", 1.0)],
)
Hardsigmoid = _activation("Hardsigmoid", lambda x: F.hardsigmoid(x))
Hardswish = _activation("Hardswish", lambda x: F.hardswish(x))
LogSigmoid = _activation("LogSigmoid", lambda x: F.logsigmoid(x))
Softsign = _activation("Softsign", lambda x: F.softsign(x))
Softmax = _activation("Softmax", lambda x, dim: F.softmax(x, dim=dim), [("dim", None)])
LogSoftmax = _activation("LogSoftmax", lambda x, dim: F.log_softmax(x, dim=dim), [("dim", None)])
Threshold = _activation(
    "Threshold",
    lambda x, threshold, value: F.threshold(x, threshold, value),
    [("threshold", 0.0), ("value", 0.0)],
)
CELU = _activation("CELU", lambda x, alpha: F.celu(x, alpha), [("alpha", 1.0)])
GLU = _activation("GLU", lambda x, dim: F.glu(x, dim), [("dim", -1)])
Hardshrink = _activation("Hardshrink", lambda x, lambd: F.hardshrink(x, lambd), [("lambd", 0.5)])
Softshrink = _activation("Softshrink", lambda x, lambd: F.softshrink(x, lambd), [("lambd", 0.5)])
Tanhshrink = _activation("Tanhshrink", lambda x: F.tanhshrink(x))
Softmin = _activation("Softmin", lambda x, dim: F.softmin(x, dim=dim), [("dim", None)])


def _softmax2d(x):
    if x.ndim not in (3, 4):
        raise ValueError(f"Softmax2d: expected input to be 3D or 4D, got {x.ndim}D instead")
    return F.softmax(x, dim=-3)


Softmax2d = _activation(
    "Softmax2d", _softmax2d, doc="Softmax over the channels (dim -3) of (N, C, H, W) inputs."
)


class RReLU(Module):
    """Randomized leaky ReLU: negative slopes drawn from U(lower, upper) in training, their
    mean in evaluation."""

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False):
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input):
        """``F.rrelu(input, lower, upper, self.training)``."""
        return F.rrelu(input, self.lower, self.upper, self.training, self.inplace)

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}"


class PReLU(Module):
    """``max(0, x) + a * min(0, x)`` with a learnt slope ``weight`` (one, or one per channel),
    initialised to ``init``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters, self.init = num_parameters, init
        self.weight = Parameter(ops.full((num_parameters,), init, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        """Every slope back to ``init``."""
        from .. import init as _init

        _init.constant_(self.weight, self.init)

    def forward(self, input):
        """``F.prelu(input, self.weight)``."""
        return F.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"
