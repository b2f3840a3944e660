"""Function transforms, as ``torch.func``: ``vjp``, ``jvp``, ``grad``, ``jacrev``, ``jacfwd``,
``hessian``.

They are built on the reverse-mode engine. ``jvp`` uses the double-vjp trick: with
``g(u) = J^T u`` recorded with ``create_graph=True`` (the backward of every op is written once
for arrays and tensors, so it is itself differentiable), ``J v`` is the vjp of ``g`` with
respect to the dummy cotangent ``u``, with cotangent ``v``. So forward mode works for every op
whose backward is differentiable — elementwise, reduction, matmul and shape ops — and raises
for ``once_differentiable`` ones (convolution, pooling, normalisation). It costs two backward
passes instead of one forward, which is the price of not having dual tensors.

The transforms nest (``hessian`` is ``jacrev(jacrev(f))``): a primal that already requires
grad (from an outer transform) is used through an identity op, so the inner derivative only
follows paths through its own argument.
"""

from __future__ import annotations

import functools

from .autograd import Op, Tensor, enable_grad, is_grad_enabled
from .autograd import grad as _autograd_grad
from .ops import eye, ones_like, stack, zeros_like

__all__ = ["vjp", "jvp", "grad", "grad_and_value", "jacrev", "jacfwd", "hessian"]


class _Alias(Op):
    """Identity: a new tensor, distinct from its input, whose gradient flows to the input."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        return g


def _prepare(primals, name):
    """The tensors to differentiate at, and whether we are nested in an outer transform."""
    xs = []
    for i, p in enumerate(primals):
        if not isinstance(p, Tensor) or not p.is_floating_point():
            raise TypeError(
                f"{name}: primal {i} must be a floating point Tensor, got "
                f"{getattr(p, 'dtype', type(p).__name__)}"
            )
        xs.append(_Alias.apply(p) if p.requires_grad else p.detach().requires_grad_(True))
    nested = is_grad_enabled() and any(p.requires_grad for p in primals)
    return xs, nested


def _outputs(out, name):
    """``out`` as a tuple of tensors, and whether it was a single tensor."""
    single = isinstance(out, Tensor)
    outs = (out,) if single else tuple(out) if isinstance(out, (tuple, list)) else None
    if outs is None or not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(
            f"{name}: the function must return a Tensor or a tuple of tensors, "
            f"got {type(out).__name__}"
        )
    return outs, single


def _split_aux(out, has_aux, name):
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{name}(has_aux=True): the function must return (output, aux)")
    return out


def _check_like(values, refs, what, name):
    if len(values) != len(refs):
        raise ValueError(f"{name}: expected {len(refs)} {what}, got {len(values)}")
    for i, (v, r) in enumerate(zip(values, refs)):
        if not isinstance(v, Tensor) or v.shape != r.shape or v.dtype != r.dtype:
            raise ValueError(
                f"{name}: {what} {i} must be a tensor of shape {list(r.shape)} "
                f"and dtype {r.dtype} (like its primal/output), got "
                f"{getattr(v, 'shape', type(v).__name__)}"
            )


def _grads(outputs, inputs, cotangents, create_graph):
    """d<outputs, cotangents>/d inputs; zeros for inputs the outputs do not depend on."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return tuple(zeros_like(x).detach() for x in inputs)
    gs = _autograd_grad(
        [o for o, _ in pairs],
        inputs,
        [c for _, c in pairs],
        retain_graph=True,
        create_graph=create_graph,
        allow_unused=True,
    )
    return tuple(zeros_like(x).detach() if g is None else g for g, x in zip(gs, inputs))


def _result(outs, single, nested):
    outs = outs if nested else tuple(o.detach() for o in outs)
    return outs[0] if single else outs


def vjp(fn, *primals, has_aux=False):
    """``(fn(*primals), vjp_fn)``: ``vjp_fn(cotangents)`` (a tensor, or a tuple like the
    output) returns the tuple of vector-Jacobian products, one per primal. With ``has_aux``,
    ``fn`` returns ``(output, aux)`` and ``(output, vjp_fn, aux)`` is returned."""
    xs, nested = _prepare(primals, "vjp")
    with enable_grad():
        out, aux = _split_aux(fn(*xs), has_aux, "vjp")
    outs, single = _outputs(out, "vjp")

    def vjp_fn(cotangents):
        cots = (cotangents,) if single and isinstance(cotangents, Tensor) else tuple(cotangents)
        _check_like(cots, outs, "cotangents", "vjp")
        create_graph = nested or any(c.requires_grad for c in cots)
        return _grads(outs, xs, cots, create_graph)

    result = _result(outs, single, nested)
    return (result, vjp_fn, aux) if has_aux else (result, vjp_fn)


def _linearize(fn, primals, name):
    """``(outputs, single, push)``: ``push(tangents)`` gives the Jacobian-vector products of
    each output, by the double-vjp trick (the forward runs once for any number of pushes)."""
    xs, nested = _prepare(primals, name)
    with enable_grad():
        outs, single = _outputs(fn(*xs), name)
        us = [zeros_like(o).detach().requires_grad_(True) for o in outs]
        gs = _grads(outs, xs, us, create_graph=True)  # g(u) = J^T u, linear in u

    def push(tangents):
        _check_like(tangents, primals, "tangents", name)
        live = [(g, t) for g, t in zip(gs, tangents) if g.requires_grad]
        return _grads(
            [g for g, _ in live],
            us,
            [t for _, t in live],
            create_graph=nested or any(t.requires_grad for t in tangents),
        )

    return outs, single, nested, push


def jvp(fn, primals, tangents):
    """``(fn(*primals), jvp_out)``: the Jacobian of ``fn`` at ``primals`` applied to
    ``tangents`` (one per primal, same shapes), with the structure of the output."""
    primals, tangents = tuple(primals), tuple(tangents)
    outs, single, nested, push = _linearize(fn, primals, "jvp")
    jv = push(tangents)
    if not nested:
        jv = tuple(t.detach() for t in jv)
    return _result(outs, single, nested), (jv[0] if single else jv)


def _argnums(args, argnums, name):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not -len(args) <= n < len(args):
            raise IndexError(f"{name}: argnums {n} out of range for {len(args)} arguments")
    return tuple(n % len(args) for n in nums)


def _with(fn, args, nums):
    """``fn`` as a function of the arguments at ``nums`` only."""

    def partial(*chosen):
        full = list(args)
        for n, value in zip(nums, chosen):
            full[n] = value
        return fn(*full)

    return partial


def grad_and_value(fn, argnums=0, has_aux=False):
    """Like ``grad``, returning ``(gradient, value)``; with ``has_aux``,
    ``(gradient, (value, aux))`` (as torch.func)."""

    @functools.wraps(fn)
    def wrapper(*args):
        nums = _argnums(args, argnums, "grad")
        result = vjp(_with(fn, args, nums), *(args[n] for n in nums), has_aux=has_aux)
        value, vjp_fn = result[0], result[1]
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise RuntimeError(
                f"grad: the function must return a one-element tensor, got "
                f"{getattr(value, 'shape', type(value).__name__)}"
            )
        g = vjp_fn(ones_like(value))
        g = g[0] if isinstance(argnums, int) else g
        return (g, (value, result[2])) if has_aux else (g, value)

    return wrapper


def grad(fn, argnums=0, has_aux=False):
    """The function computing the gradient of ``fn`` (which returns a one-element tensor)
    with respect to the argument(s) ``argnums``; with ``has_aux`` it returns
    ``(gradient, aux)``."""
    inner = grad_and_value(fn, argnums, has_aux)

    @functools.wraps(fn)
    def wrapper(*args):
        g, value = inner(*args)
        return (g, value[1]) if has_aux else g

    return wrapper


def _basis(t: Tensor):
    """The standard basis of ``t``'s shape, as tensors."""
    identity = eye(t.numel(), dtype=t.dtype, device=t.device)
    return [identity[k].reshape(t.shape) for k in range(t.numel())]


def jacrev(fn, argnums=0):
    """The Jacobian of ``fn`` (returning one tensor) with respect to argument(s) ``argnums``,
    row by row with vjps: shape ``output.shape + argument.shape``."""

    @functools.wraps(fn)
    def wrapper(*args):
        nums = _argnums(args, argnums, "jacrev")
        out, vjp_fn = vjp(_with(fn, args, nums), *(args[n] for n in nums))
        if not _outputs(out, "jacrev")[1]:
            raise TypeError("jacrev: the function must return a single tensor")
        rows = [vjp_fn(e) for e in _basis(out)]
        jac = tuple(
            stack([r[i] for r in rows]).reshape(tuple(out.shape) + tuple(args[n].shape))
            for i, n in enumerate(nums)
        )
        return jac[0] if isinstance(argnums, int) else jac

    return wrapper


def jacfwd(fn, argnums=0):
    """The Jacobian of ``fn`` (returning one tensor) with respect to argument(s) ``argnums``,
    column by column with jvps: shape ``output.shape + argument.shape``."""

    @functools.wraps(fn)
    def wrapper(*args):
        nums = _argnums(args, argnums, "jacfwd")
        primals = tuple(args[n] for n in nums)
        outs, single, _, push = _linearize(_with(fn, args, nums), primals, "jacfwd")
        if not single:
            raise TypeError("jacfwd: the function must return a single tensor")
        out = outs[0]
        jac = []
        for i, p in enumerate(primals):
            zeros = [zeros_like(q).detach() for q in primals]
            columns = []
            for e in _basis(p):
                zeros[i] = e
                columns.append(push(zeros)[0])
            jac.append(stack(columns, dim=-1).reshape(tuple(out.shape) + tuple(p.shape)))
        return jac[0] if isinstance(argnums, int) else tuple(jac)

    return wrapper


def hessian(fn, argnums=0):
    """The Hessian of ``fn`` (returning a one-element tensor): ``jacrev(jacrev(fn))``."""
    return jacrev(jacrev(fn, argnums), argnums)
