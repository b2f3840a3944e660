"""``distgrad.amp``: automatic mixed precision, as ``torch.amp``: ``autocast`` runs ops in
float16/bfloat16 by a cast policy each op class declares, ``GradScaler`` scales the loss so
float16 gradients do not underflow and skips steps with inf/NaN gradients."""

from .autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled
from .grad_scaler import GradScaler

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype"]
