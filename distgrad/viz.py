"""Draw the backward graph of a tensor, as torchviz's ``make_dot`` does: ``to_dot`` (Graphviz)
and ``to_mermaid`` return source text; ``render`` writes PNG/SVG with Graphviz's ``dot``.

The graph is read from the public node API that torchviz users know: ``tensor.grad_fn``, each
node's ``name()`` (``MulBackward``) and ``next_functions``, and the ``variable`` of a leaf's
``AccumulateGrad`` node. Edges point from inputs to the op that used them, so the leaves
(parameters, blue, labelled with their names when ``params`` is given) are at the top and
the output (green) at the bottom; ``show_saved`` adds each op's saved values (orange).
"""

from __future__ import annotations

import shutil
import subprocess

from .autograd import Tensor

__all__ = ["to_dot", "to_mermaid", "render"]

_COLORS = {"output": "darkolivegreen1", "leaf": "lightblue", "saved": "orange"}
_MERMAID_COLORS = {"output": "#caff70", "leaf": "#add8e6", "saved": "#ffa500"}


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _graph(tensors, params, show_saved):
    """Nodes as (id, label lines, kind) and edges as (from, to, dashed), in discovery order."""
    names = {id(t): name for name, t in (params or {}).items()}
    nodes, edges, ids = [], [], {}

    def node(obj, lines, kind=None):
        key = id(obj)
        if key not in ids:
            ids[key] = f"n{len(ids)}"
            nodes.append((ids[key], lines, kind))
        return ids[key]

    def leaf_label(t):
        return [names[id(t)], _shape(t.shape)] if id(t) in names else [_shape(t.shape)]

    stack = []
    for t in tensors:
        out = node(
            t,
            [names.get(id(t), "output"), _shape(t.shape)],
            "leaf" if t.requires_grad and t.grad_fn is None else "output",
        )
        if t.grad_fn is None:
            continue
        seen = id(t.grad_fn) in ids
        edges.append((node(t.grad_fn, [t.grad_fn.name()]), out, False))
        if not seen:
            stack.append(t.grad_fn)
    while stack:
        fn = stack.pop()
        target = ids[id(fn)]
        if show_saved:
            for i, (shape, dtype) in enumerate(_saved_meta(fn)):
                saved = f"{target}s{i}"
                nodes.append((saved, [f"saved[{i}]", f"{_shape(shape)} {dtype}"], "saved"))
                edges.append((saved, target, True))
        for child, _ in fn.next_functions:
            if child is None:
                continue
            seen = id(child) in ids
            variable = getattr(child, "variable", None)
            if variable is not None:
                source = node(child, leaf_label(variable), "leaf")
            else:
                source = node(child, [child.name()])
            edges.append((source, target, False))
            if not seen and variable is None:
                stack.append(child)
    return nodes, edges


def _saved_meta(fn):
    """(shape, dtype) of each array an op saved for backward (none once freed)."""
    saved = getattr(fn, "_saved", None) or ()
    # entries are (array, tensor, output_nr, counter, version) tuples; values packed by
    # saved_tensors_hooks are not arrays here and are not shown
    arrays = [s[0] for s in saved if type(s) is tuple]
    return [(a.shape, a.dtype) for a in arrays if hasattr(a, "shape")]


def _roots(tensor):
    tensors = tensor if isinstance(tensor, (tuple, list)) else (tensor,)
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(f"expected a Tensor (or a tuple of tensors), got {type(t).__name__}")
    return tensors


def to_dot(tensor, params=None, show_saved=False) -> str:
    """Graphviz DOT source of the backward graph of ``tensor`` (or a tuple of tensors).
    ``params``: a ``{name: tensor}`` dict (``dict(model.named_parameters())``) naming leaves."""
    nodes, edges = _graph(_roots(tensor), params, show_saved)
    lines = [
        "digraph {",
        '  graph [size="12,12"]',
        "  node [align=left fontname=monospace fontsize=10 height=0.2 ranksep=0.1 "
        "shape=box style=filled]",
    ]
    for name, label, kind in nodes:
        text = "\\n".join(part.replace("\\", "\\\\").replace('"', '\\"') for part in label)
        color = f" fillcolor={_COLORS[kind]}" if kind else ""
        lines.append(f'  {name} [label="{text}"{color}]')
    for source, target, dashed in edges:
        lines.append(f"  {source} -> {target}" + (" [style=dashed]" if dashed else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(tensor, params=None, show_saved=False) -> str:
    """Mermaid flowchart source of the backward graph (renders in GitHub/GitLab markdown)."""
    nodes, edges = _graph(_roots(tensor), params, show_saved)
    lines = ["flowchart TB"]
    for name, label, kind in nodes:
        text = "<br/>".join(part.replace('"', "#quot;") for part in label)
        lines.append(f'  {name}["{text}"]' + (f":::{kind}" if kind else ""))
    for source, target, dashed in edges:
        lines.append(f"  {source} {'-.->' if dashed else '-->'} {target}")
    lines += [f"  classDef {kind} fill:{color}" for kind, color in _MERMAID_COLORS.items()]
    return "\n".join(lines) + "\n"


def render(tensor, path, format=None, params=None, show_saved=False) -> str:
    """Draw the backward graph to ``path`` as PNG or SVG (``format``, or the path's extension)
    with Graphviz's ``dot`` program; returns ``path``. Without Graphviz it raises: write
    ``to_dot(...)`` to a ``.dot`` file instead."""
    format = format or str(path).rsplit(".", 1)[-1].lower()
    if format not in ("png", "svg"):
        raise ValueError(f"render: format must be 'png' or 'svg', got {format!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "render needs Graphviz's `dot` program, which is not installed "
            "(apt install graphviz, brew install graphviz, conda install "
            "graphviz); to_dot() gives the source without it"
        )
    subprocess.run(
        [dot, f"-T{format}", "-o", str(path)],
        check=True,
        capture_output=True,
        input=to_dot(tensor, params, show_saved).encode(),
    )
    return str(path)
