"""``distgrad.backends.cuda``: CUDA math switches.

``matmul.allow_tf32`` and ``matmul.allow_fp16_reduced_precision_reduction`` are accepted
and remembered; distgrad's cupy matrix products follow cupy's own ``CUPY_TF32`` environment
variable (read when cupy starts), so setting them here does not change results. ``is_built()``
says whether cupy with a CUDA runtime can be imported.
"""

from __future__ import annotations

from ..backend import cupy_or_none


class _MatmulFlags:
    """``backends.cuda.matmul``: remembered flags (see the module docstring)."""

    def __init__(self) -> None:
        self.allow_tf32 = False
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True

    def __repr__(self) -> str:
        return f"cuda.matmul(allow_tf32={self.allow_tf32})"


matmul = _MatmulFlags()


def is_built() -> bool:
    """True when cupy (distgrad's CUDA backend) can be imported with a working driver."""
    return cupy_or_none() is not None


def is_flash_attention_available() -> bool:
    """False: distgrad's scaled_dot_product_attention is the plain math implementation."""
    return False


def enable_flash_sdp(enabled: bool) -> None:
    """Accepted for compatibility; distgrad has only the math attention kernel."""


def enable_mem_efficient_sdp(enabled: bool) -> None:
    """Accepted for compatibility; distgrad has only the math attention kernel."""


def enable_math_sdp(enabled: bool) -> None:
    """Accepted for compatibility; the math kernel is the only one and stays on."""
