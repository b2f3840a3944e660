"""``export``: trace a model twice, check the traces agree, convert each op to ONNX nodes."""

from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from .converters import CONVERTERS, UnsupportedOperatorError
from .trace import Ref, trace


def export(
    module,
    example_inputs,
    path,
    input_names=None,
    output_names=None,
    dynamic_axes=None,
    opset_version: int = 17,
):
    """Export ``module`` (evaluated in eval mode on ``example_inputs``, a tensor or a tuple of
    arguments) to an ONNX model written to ``path`` (a file name or a binary file object);
    returns the ``onnx.ModelProto``.

    Parameters and buffers become initializers named as in ``named_parameters()`` and
    ``named_buffers()``; tensor arguments are the graph inputs (``input_names``, default
    ``input``/``input0``...), the returned tensors its outputs (``output_names``).
    ``dynamic_axes`` maps an input or output name to ``{axis: dim_name}`` (or a list of axes),
    as in ``torch.onnx.export``: those sizes may differ at run time.

    The model is traced on the example inputs and once more on inputs grown along the dynamic
    axes and with other values; the two runs must perform the same ops. Shapes that follow
    the dynamic axes are computed in the graph. Control flow is frozen at the traced path, and
    a tensor computed outside distgrad's ops whose value depends on the inputs raises. An op
    without an ONNX conversion raises ``UnsupportedOperatorError``.
    """
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "distgrad.onnx.export needs the onnx package: pip install "
            "'distgrad[onnx]' (or pip install onnx)"
        ) from None
    from .graph import Graph, value_info  # these import onnx

    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    in_names = _default_names(input_names, len(positions), "input")
    in_dims = _input_dims(dynamic_axes, in_names, [args[i] for i in positions])
    named = _named_tensors(module)
    other_args = _trace_inputs(args, positions, in_dims, True)
    first, second = _trace_twice(
        module, _trace_inputs(args, positions, in_dims, False), other_args, named
    )
    outputs = first[2]
    out_names = _default_names(output_names, len(outputs), "output")
    unknown = set(dynamic_axes or {}) - set(in_names) - set(out_names)
    if unknown:
        raise ValueError(
            f"ONNX export: dynamic_axes names {sorted(unknown)} are neither "
            f"input names {in_names} nor output names {out_names}"
        )

    g = Graph(opset_version)
    names = {Ref("input", i): g.reserve(name) for i, name in zip(positions, in_names)}
    _convert(g, names, first, second, named, out_names)
    pairs = [((args[i], other_args[i]), in_dims[name]) for i, name in zip(positions, in_names)]
    out_dims = _output_dims(dynamic_axes, out_names, outputs, second[2], pairs)
    graph = onnx.helper.make_graph(
        g.nodes,
        type(module).__name__,
        [
            value_info(name, args[i].array.dtype, args[i].shape, in_dims[name])
            for i, name in zip(positions, in_names)
        ],
        [
            value_info(name, t.array.dtype, t.shape, out_dims[name])
            for t, name in zip(outputs, out_names)
        ],
        g.initializers,
    )
    opsets = [onnx.helper.make_opsetid("", opset_version)]
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="distgrad")
    model.ir_version = onnx.helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def _trace_twice(module, inputs, other_inputs, named):
    """Both traces, in eval mode (the module's mode is restored)."""
    training = getattr(module, "training", False)
    if hasattr(module, "eval"):
        module.eval()
    try:
        first = trace(module, inputs, named)
        with np.errstate(all="ignore"):
            second = trace(module, other_inputs, named)
    finally:
        if hasattr(module, "train"):
            module.train(training)
    return first, second


def _convert(g, names: dict, first, second, named, out_names) -> None:
    """Add the nodes of every call that reaches an output; ``names`` maps Refs to value names
    (the inputs' on entry)."""
    from .graph import Node

    calls, out_refs, _ = first
    changed = _compare(first, second)
    for ref, name in zip(out_refs, out_names):
        if ref.kind == "out" and ref not in names:
            names[ref] = g.reserve(name)
    tensors = {ref: t for ref, t in named}
    buffers = {id(t.array): ref for ref, t in named if ref.kind == "buffer"}

    def value(ref: Ref) -> str:
        if ref.kind == "const":
            if id(ref.key) not in buffers:
                return g.const(ref.key, hint="const")
            ref = buffers[id(ref.key)]
        if ref not in names:  # a parameter or buffer met for the first time
            names[ref] = g.initializer(g.reserve(ref.key), tensors[ref].array)
        return names[ref]

    for index in sorted(_live(calls, out_refs)):
        call, other = calls[index], second[0][index]
        entry = CONVERTERS.get(call.op)
        if entry is None:
            raise UnsupportedOperatorError(call)
        convert, sized = entry
        bad = sorted(changed[index] - sized)
        if bad:
            j = bad[0]
            raise RuntimeError(
                f"ONNX export: argument {j} of {call.name} changes with the "
                f"dynamic axes ({call.args[j]!r} vs {other.args[j]!r}); it "
                f"cannot be exported for dynamic sizes"
            )
        outs = []
        for k in range(len(call.outputs)):
            ref = Ref("out", (index, k))
            if ref not in names:
                names[ref] = g.fresh(f"{call.op.__name__}_{index}" + (f"_{k}" if k else ""))
            outs.append(names[ref])
        convert(
            Node(
                g,
                call,
                other,
                value,
                outs,
                lambda reason, call=call: UnsupportedOperatorError(call, reason),
            )
        )
    for ref, name in zip(out_refs, out_names):
        if ref.kind == "const" or names.get(ref) != name:
            g.op("Identity", [value(ref)], g.reserve(name))


def _default_names(given, count: int, stem: str) -> list:
    if given is None:
        return [stem] if count == 1 else [f"{stem}{i}" for i in range(count)]
    given = list(given)
    if len(given) != count:
        raise ValueError(f"ONNX export: {len(given)} {stem}_names for {count} {stem}s")
    return given


def _named_tensors(module) -> list:
    named = [(Ref("param", n), p) for n, p in getattr(module, "named_parameters", list)()]
    return named + [(Ref("buffer", n), b) for n, b in getattr(module, "named_buffers", list)()]


def _axes_spec(dynamic_axes, name: str, ndim: int) -> dict:
    """``{axis: dim_name}`` for one input or output named in ``dynamic_axes``."""
    spec = (dynamic_axes or {}).get(name, {})
    if not isinstance(spec, dict):
        spec = {a: f"{name}_dynamic_axes_{a % max(ndim, 1) + 1}" for a in spec}
    out = {}
    for axis, dim_name in spec.items():
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"ONNX export: dynamic axis {axis} of {name!r} is out of range "
                f"for {ndim} dimensions"
            )
        out[axis % ndim] = dim_name
    return out


def _input_dims(dynamic_axes, in_names, tensors) -> dict:
    return {name: _axes_spec(dynamic_axes, name, t.ndim) for name, t in zip(in_names, tensors)}


def _output_dims(dynamic_axes, out_names, outputs, second_outputs, inputs) -> dict:
    """Named dims of each output: those given, and any other that changed between the
    traces, named as the input dim that changed alike (or ``<output>_dynamic_axes_<d>``)."""
    by_sizes: dict = {}
    for (a, b), dims in inputs:
        for d, dim_name in dims.items():
            by_sizes.setdefault((a.shape[d], b.shape[d]), dim_name)
    out = {}
    for name, a, b in zip(out_names, outputs, second_outputs):
        spec = _axes_spec(dynamic_axes, name, a.ndim)
        for d, sizes in enumerate(zip(a.shape, b.shape)):
            if sizes[0] != sizes[1]:
                spec.setdefault(d, by_sizes.get(sizes, f"{name}_dynamic_axes_{d + 1}"))
        out[name] = spec
    return out


def _trace_inputs(args, positions, in_dims, variant: bool) -> tuple:
    """Fresh leaf tensors of the example inputs (floating ones requiring grad, so every op
    on them is recorded with its autograd node). The variant grows the k-th named dynamic
    axis by k + 1 (so each name's pair of sizes is unique) and changes the values (rolled
    along the last axis; floats also scaled and shifted)."""
    growth = _growth(in_dims)
    out = list(args)
    for i, name in zip(positions, in_dims):
        a = args[i].array
        if variant:
            for axis, dim_name in in_dims[name].items():
                extra = np.take(a, [0] * growth[dim_name], axis=axis)
                a = np.concatenate([a, extra], axis=axis)
            if a.ndim:
                a = np.roll(a, 1, axis=-1)
            if a.dtype.kind == "f":
                a = (a * 1.25 + 0.125).astype(a.dtype)
        t = Tensor(a)
        if t.is_floating_point():
            t.requires_grad_()
        out[i] = t
    return tuple(out)


def _growth(in_dims) -> dict:
    names = dict.fromkeys(d for dims in in_dims.values() for d in dims.values())
    return {name: k + 1 for k, name in enumerate(names)}


def _same(a, b) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and _same(a.array, b.array)
    if hasattr(a, "shape") and hasattr(a, "dtype") or hasattr(b, "shape") and hasattr(b, "dtype"):
        return np.shape(a) == np.shape(b) and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _compare(first, second) -> list:
    """Check that the two traces ran the same ops on the same tensors; for each call, the
    set of non-tensor arguments that differ."""
    calls, other = first[0], second[0]
    ops = [c.op for c in calls]
    if ops != [c.op for c in other] or not _same_refs(first[1], second[1]):
        at = next(
            (i for i, (a, b) in enumerate(zip(ops, other)) if a is not b.op),
            min(len(calls), len(other)),
        )
        where = calls[at].name if at < len(calls) else "the end of the model"
        raise RuntimeError(
            f"ONNX export: a second trace with other input values (and sizes along the dynamic "
            f"axes) ran different ops, first at {where}. The model's control flow depends on "
            f"its inputs, which a static ONNX graph cannot follow."
        )
    changed = []
    for a, b in zip(calls, other):
        diff = set()
        for j, (x, y, ra, rb) in enumerate(zip(a.args, b.args, a.refs, b.refs)):
            if ra is None:
                if not _same(x, y):
                    diff.add(j)
            elif ra.kind != "const" or rb.kind != "const":
                if ra != rb:
                    raise RuntimeError(
                        f"ONNX export: argument {j} of {a.name} comes from "
                        f"different tensors in two traces"
                    )
            elif not _same_refs([ra], [rb]):
                raise RuntimeError(
                    f"ONNX export: argument {j} of {a.name} is a tensor computed outside "
                    f"distgrad's ops (with numpy, .item(), a comparison, argmax, ...) whose "
                    f"value or shape depends on the inputs; it would be frozen into the graph. "
                    f"Compute it with distgrad ops, or pass it as an input."
                )
        changed.append(diff)
    return changed


def _same_refs(a, b) -> bool:
    return len(a) == len(b) and all(
        x.kind == y.kind and (_same(x.key, y.key) if x.kind == "const" else x.key == y.key)
        for x, y in zip(a, b)
    )


def _live(calls, out_refs) -> set:
    """The calls whose outputs reach the model's outputs."""
    needed = {r for r in out_refs if r.kind == "out"}
    live = set()
    for index in range(len(calls) - 1, -1, -1):
        call = calls[index]
        if any(Ref("out", (index, k)) in needed for k in range(len(call.outputs))):
            live.add(index)
            needed.update(r for r in call.refs if r is not None and r.kind == "out")
    return live
