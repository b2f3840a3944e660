"""The backend layer: array modules (numpy/cupy), devices, dtypes and random streams.

Imports nothing else of distgrad. cupy is imported lazily, so numpy alone is enough.
"""

from . import dtypes, logconfig, random
from .device import (
    CPU,
    Device,
    array_module_for,
    cuda_unavailable_reason,
    cupy_or_none,
    device,
    device_of,
    get_array_module,
    get_default_device,
    is_array,
    set_default_device,
)
from .dtypes import (
    as_dtype,
    from_numpy_dtype,
    get_default_dtype,
    is_floating,
    result_type,
    set_default_dtype,
)
