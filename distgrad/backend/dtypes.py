"""distgrad dtypes: thin named wrappers over numpy dtypes, and PyTorch's type promotion."""

from __future__ import annotations

import numpy as np

__all__ = [
    "dtype",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "int32",
    "int64",
    "bool",
    "get_default_dtype",
    "set_default_dtype",
    "as_dtype",
    "result_type",
    "is_floating",
]

_builtin_bool = bool


class dtype:
    """A tensor element type (``distgrad.float32``, ...). Compare with ``==`` or ``is``."""

    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "_category")

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = category == 2
        self.is_signed = category != 0 and self.np.kind != "u"
        self.itemsize = self.np.itemsize
        self._category = category  # 0 bool, 1 integer, 2 floating

    def __repr__(self) -> str:
        return f"distgrad.{self.name}"

    def __reduce__(self):
        return (as_dtype, (self.name,))


def _bfloat16_numpy():
    try:
        import ml_dtypes
    except ImportError:
        return None
    return ml_dtypes.bfloat16


float16 = dtype("float16", np.float16, 2)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)
int8 = dtype("int8", np.int8, 1)
uint8 = dtype("uint8", np.uint8, 1)
int16 = dtype("int16", np.int16, 1)
int32 = dtype("int32", np.int32, 1)
int64 = dtype("int64", np.int64, 1)
bool = dtype("bool", np.bool_, 0)  # noqa: A001 - PyTorch's public name
_bf16 = _bfloat16_numpy()
bfloat16 = dtype("bfloat16", _bf16, 2) if _bf16 is not None else None

_ALL = [
    d for d in (float16, bfloat16, float32, float64, int8, uint8, int16, int32, int64, bool) if d
]
_BY_NUMPY = {d.np: d for d in _ALL}
_BY_NAME = {d.name: d for d in _ALL}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64, "int": int32})

_default_float = float32


def get_default_dtype() -> dtype:
    """The floating dtype that new float tensors get (float32 unless changed)."""
    return _default_float


def set_default_dtype(d) -> None:
    """Set the dtype that Python floats and float factories produce (float32 or float64)."""
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating dtypes are supported, got {d}")
    _default_float = d


def as_dtype(d) -> dtype:
    """Convert a distgrad dtype, numpy dtype, Python type or name to a distgrad dtype."""
    if isinstance(d, dtype):
        return d
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is _builtin_bool:
        return bool
    if isinstance(d, str):
        found = _BY_NAME.get(d.removeprefix("distgrad."))
        if found is not None:
            return found
    try:
        found = _BY_NUMPY.get(np.dtype(d))
    except TypeError:
        found = None
    if found is None:
        raise TypeError(f"unsupported dtype {d!r}; supported: {', '.join(sorted(_BY_NAME))}")
    return found


def is_floating(np_dtype) -> _builtin_bool:
    """Whether a numpy dtype is a real floating type: numpy's, or ml_dtypes' bfloat16 (whose
    numpy kind is 'V')."""
    return np_dtype.kind == "f" or (_bf16 is not None and np_dtype == _bf16)


def from_numpy_dtype(np_dtype) -> dtype:
    """The distgrad dtype for a numpy dtype."""
    found = _BY_NUMPY.get(np_dtype)
    if found is None:
        raise TypeError(
            f"arrays of numpy dtype {np_dtype} have no distgrad dtype; "
            f"supported: {', '.join(sorted(d.name for d in _ALL))}"
        )
    return found


def _wider(a: dtype, b: dtype) -> dtype:
    """Promote two dtypes as torch.promote_types does."""
    if a is b:
        return a
    if a._category != b._category:
        return a if a._category > b._category else b
    if {a, b} == {float16, bfloat16}:
        return float32
    return _BY_NUMPY[np.promote_types(a.np, b.np)]


def result_type(*operands) -> dtype:
    """PyTorch's promotion for a mix of tensors (anything with ``.dtype`` and ``.ndim``) and
    Python scalars: dimensioned tensors win over 0-d tensors, which win over scalars, unless a
    lower-priority operand is of a higher category (bool < integer < floating)."""
    dims, zero_dims, scalar_cat = None, None, -1
    for x in operands:
        d = getattr(x, "dtype", None)
        if d is None:
            cat = 0 if isinstance(x, _builtin_bool) else 1 if isinstance(x, int) else 2
            scalar_cat = max(scalar_cat, cat)
            continue
        d = as_dtype(d)
        if x.ndim:
            dims = d if dims is None else _wider(dims, d)
        else:
            zero_dims = d if zero_dims is None else _wider(zero_dims, d)
    result = dims
    if zero_dims is not None:
        if result is None or zero_dims._category > result._category:
            result = zero_dims
    if scalar_cat >= 0 and (result is None or scalar_cat > result._category):
        result = (bool, int64, _default_float)[scalar_cat]
    if result is None:
        raise TypeError("result_type() expected at least one tensor or number")
    return result
