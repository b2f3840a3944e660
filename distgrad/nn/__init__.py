"""``distgrad.nn``: modules, layers, losses, ``functional``, ``init`` and ``utils``."""

from . import functional, init, parallel, utils
from .container import ModuleDict, ModuleList, ParameterList, Sequential
from .module import Module
from .modules.activation import *  # noqa: F401,F403
from .modules.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .modules.distance import CosineSimilarity, PairwiseDistance
from .modules.dropout import Dropout, Dropout1d, Dropout2d, Dropout3d, Embedding, EmbeddingBag
from .modules.linear import Flatten, Identity, Linear, Unflatten
from .modules.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CosineEmbeddingLoss,
    CrossEntropyLoss,
    GaussianNLLLoss,
    HingeEmbeddingLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MarginRankingLoss,
    MSELoss,
    MultiLabelSoftMarginLoss,
    NLLLoss,
    PoissonNLLLoss,
    SmoothL1Loss,
    SoftMarginLoss,
    TripletMarginLoss,
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
from .modules.pixelshuffle import ChannelShuffle, PixelShuffle, PixelUnshuffle
from .modules.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from .modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell, RNNCellBase
from .modules.transformer import (
    MultiheadAttention,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from .modules.upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d
from .parameter import Parameter
