"""Building the ONNX graph: ``Graph`` collects nodes and initializers under unique names;
``Node`` is what a converter sees of one recorded op call."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..autograd import Tensor
from .trace import Ref


class Graph:
    """Nodes and initializers of the graph being built, for one opset version."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._taken: set = set()
        self._consts: dict = {}

    def fresh(self, hint: str) -> str:
        name, n = hint, 0
        while name in self._taken:
            n += 1
            name = f"{hint}_{n}"
        self._taken.add(name)
        return name

    def reserve(self, name: str) -> str:
        if name in self._taken:
            raise ValueError(
                f"ONNX export: the name {name!r} is used twice (input, output, "
                f"parameter or buffer names must be unique)"
            )
        self._taken.add(name)
        return name

    def op(self, op_type: str, inputs, outputs=None, n_out: int = 1, **attrs):
        """Add a node; ``inputs`` are value names ('' skips an optional input). Returns the
        output name (a list when ``n_out`` > 1 or ``outputs`` is a list)."""
        many = isinstance(outputs, list) or n_out > 1
        if outputs is None:
            outputs = [self.fresh(f"{op_type}_out") for _ in range(n_out)]
        elif not isinstance(outputs, list):
            outputs = [outputs]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outputs, name=self.fresh(op_type), **attrs)
        )
        return outputs if many else outputs[0]

    def initializer(self, name: str, array) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value, dtype=None, hint: str = "const") -> str:
        """An initializer holding ``value`` (array or Python number/sequence) as ``dtype``;
        small constants are shared."""
        array = np.asarray(value, dtype=dtype)
        key = None
        if array.size <= 16:
            key = (array.dtype.str, array.shape, array.tobytes())
            if key in self._consts:
                return self._consts[key]
        name = self.initializer(self.fresh(hint), array)
        if key is not None:
            self._consts[key] = name
        return name

    @staticmethod
    def onnx_type(np_dtype) -> int:
        """The ONNX element type of a numpy dtype."""
        return helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))

    def ints(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint="ints")

    def reduce(self, op_type: str, x: str, axes, keepdims: bool, output=None) -> str:
        """``op_type`` over ``axes`` (none: the identity). ReduceSum takes axes as an input
        from opset 13, the others from 18."""
        if not axes:
            return self.op("Identity", [x], output)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes)], output, keepdims=int(keepdims))
        return self.op(op_type, [x], output, axes=list(axes), keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes, output=None) -> str:
        return self.op("Unsqueeze", [x, self.ints(axes)], output)

    def squeeze(self, x: str, axes, output=None) -> str:
        return self.op("Squeeze", [x, self.ints(axes)], output)


class Node:
    """One recorded op call as its converter sees it.

    ``input(i)`` is the value name of argument ``i`` (a tensor, an array, or a Python number
    made a constant of ``like``'s dtype); ``out(k)`` the name output ``k`` must get.
    ``shape(i)``/``dynamic(i)`` give a tensor argument's shape and which of its dims vary with
    the dynamic axes; ``varies(i)`` which entries of a non-tensor argument (a shape) do.
    """

    def __init__(self, g: Graph, call, other, names, out_names, unsupported):
        self.g, self.call, self.args, self.op = g, call, call.args, call.op
        self._other, self._names, self._out_names = other, names, out_names
        self.unsupported = unsupported  # raise self.unsupported(reason)

    def input(self, i: int, like: int | None = None) -> str:
        a = self.args[i]
        if isinstance(a, Tensor):
            return self._names(self.call.refs[i])
        if a is None:
            return ""
        if hasattr(a, "shape"):
            return self.array(a)
        return self.g.const(a, None if like is None else self.dtype(like))

    def array(self, a) -> str:
        """The value name of a raw array argument (a buffer's name when it is one)."""
        return self._names(Ref("const", a))

    def out(self, k: int = 0) -> str:
        return self._out_names[k]

    def dtype(self, i: int):
        a = self.args[i]
        return a.array.dtype if isinstance(a, Tensor) else np.asarray(a).dtype

    def shape(self, i: int) -> tuple:
        a = self.args[i]
        return tuple(a.shape) if isinstance(a, Tensor) else np.shape(a)

    def out_shape(self, k: int = 0) -> tuple:
        return tuple(self.call.outputs[k].shape)

    def dynamic(self, i: int) -> tuple:
        """Per dim of tensor argument ``i``: whether its size changes with the dynamic axes."""
        return tuple(a != b for a, b in zip(self.shape(i), self._other.args[i].shape))

    def out_dynamic(self, k: int = 0) -> tuple:
        return tuple(a != b for a, b in zip(self.out_shape(k), self._other.outputs[k].shape))

    def varies(self, i: int) -> tuple:
        """Per entry of the sequence argument ``i``: whether it changes with the dynamic
        axes."""
        return tuple(a != b for a, b in zip(self.args[i], self._other.args[i]))

    def shape_input(self, i: int, target: tuple, target_varies: tuple, expand=False) -> str:
        """A shape tensor giving ``target`` for tensor argument ``i`` such that its dynamic
        entries follow the input: for Reshape, 0 copies the input's dim at the same position
        and one -1 is inferred; for Expand (``expand``), 1 keeps the input's dim. Any other
        dynamic entry is unsupported."""
        src, src_dyn = self.shape(i), self.dynamic(i)
        if not any(target_varies):
            return self.g.ints(target)
        out, free = list(target), []
        offset = len(target) - len(src) if expand else 0
        for d, varies in enumerate(target_varies):
            j = d - offset
            if not varies:
                continue
            if 0 <= j < len(src) and src_dyn[j] and src[j] == target[d]:
                out[d] = 1 if expand else 0
            else:
                free.append(d)
        if not free:
            return self.g.ints(out)
        if not expand and len(free) == 1 and 0 not in target:
            out[free[0]] = -1
            return self.g.ints(out)
        raise self.unsupported(
            f"its target shape {list(target)} has dimensions that change "
            f"with the dynamic axes in a way the export cannot follow"
        )


def value_info(name: str, np_dtype, shape, dim_names: dict) -> onnx.ValueInfoProto:
    dims = [dim_names.get(d, n) for d, n in enumerate(shape)]
    return helper.make_tensor_value_info(name, Graph.onnx_type(np_dtype), dims)
