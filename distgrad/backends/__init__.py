"""``distgrad.backends``: PyTorch's backend switches, with what each means here.

distgrad computes with numpy on the CPU and cupy on CUDA GPUs; it does not call cuDNN, MPS,
oneDNN or XPU libraries itself. The switches programs set at their top
(``backends.cudnn.benchmark = True``, ``backends.cuda.matmul.allow_tf32 = True``) are
accepted and remembered so those programs run unchanged; each module documents whether its
flags change anything. The ``is_available()`` functions answer honestly for distgrad: cuDNN
and MPS are never used, so they say False.
"""

from . import cpu, cuda, cudnn, mkldnn, mps, openmp

__all__ = ["cpu", "cuda", "cudnn", "mkldnn", "mps", "openmp"]
