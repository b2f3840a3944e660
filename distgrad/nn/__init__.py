"""``distgrad.nn``: modules, layers, losses, ``functional``, ``init`` and ``utils``."""

from . import functional, init, parallel, utils
from .container import ModuleDict, ModuleList, ParameterList, Sequential
from .module import Module
from .modules.activation import *  # noqa: F401,F403
from .modules.conv import Conv1d, Conv2d, ConvTranspose2d
from .modules.dropout import Dropout, Embedding
from .modules.linear import Flatten, Identity, Linear, Unflatten
from .modules.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .modules.normalization import (
    BatchNorm1d,
    BatchNorm2d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
)
from .modules.padding import *  # noqa: F401,F403
from .modules.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .modules.transformer import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer
from .parameter import Parameter
