"""Activation functions as modules (``ReLU``, ``GELU``, ``Softmax``, ...)."""

from __future__ import annotations

from .. import functional as F
from ..module import Module

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
