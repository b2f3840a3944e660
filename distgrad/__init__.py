"""distgrad: a define-by-run deep-learning framework on numpy (CPU) and cupy (GPU), with
data-parallel training over MPI from one process to many nodes. The public API follows
PyTorch."""

from . import (
    _launched,  # noqa: F401 - first, before numpy: see distgrad/_launched.py
    accelerator,
    amp,
    autograd,
    backend,
    backends,
    checkpoint,
    cuda,
    data,
    distributed,
    distributions,
    func,
    jit,
    multiprocessing,
    nn,
    ops,
    optim,
    utils,
    viz,
)
from ._version import __version__
from .autograd import (
    Tensor,
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .backend import (
    Device,
    device,
    get_default_device,
    get_default_dtype,
    set_default_device,
    set_default_dtype,
)
from .backend.dtypes import (
    bfloat16,
    bool,
    dtype,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    uint8,
)
from .backend.random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .ops import *  # noqa: F401,F403
from .serialization import load, save

# PyTorch's dtype aliases (``torch.float`` is float32 whatever the default dtype, as there)
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
short = int16
Size = tuple  # ``x.shape == torch.Size([2, 3])``: distgrad's shapes are plain tuples
from .autograd import Variable  # noqa: E402


def __getattr__(name):
    # distgrad.onnx is imported on first use, so that `import distgrad` never imports onnx
    if name == "onnx":
        import importlib

        return importlib.import_module(".onnx", __name__)
    raise AttributeError(f"module 'distgrad' has no attribute {name!r}")
