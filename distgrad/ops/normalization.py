"""Normalisation: batch_norm, instance_norm, layer_norm, group_norm.

All four are one fused op, ``Normalize``: standardise x over some axes of a view of it (with
the batch's statistics, or with given running statistics), then scale and shift with weight
and bias broadcast as ``param_shape``. The backward is the fused closed form (once
differentiable).
"""

from __future__ import annotations

import math

from ..autograd import Op, Tensor
from ..autograd.function import autocasting
from ._helpers import check_same_device, unbroadcast
from .windows import workspace

__all__ = ["batch_norm", "instance_norm", "layer_norm", "group_norm"]


class Normalize(Op):
    """y = (x - mean) / sqrt(var + eps) * weight + bias.

    x is viewed as ``view`` and normalised over ``axes``; weight and bias broadcast against x as
    ``param_shape``. ``stats`` = (mean, var) arrays of ``param_shape`` replaces the batch
    statistics (evaluation mode). ``running`` = (running_mean, running_var, momentum) are
    updated in place with the batch statistics (averaged over what remains of the view beyond
    the running stats' size, and the variance unbiased), as PyTorch does.
    """

    autocast = "float32"
    once_differentiable = True
    # jit buffer planning (ctx.out_buffer, ctx.grad_buffer; the general path writes xhat into
    # ctx.work_buffer and keeps it, and uses the output's buffer for the squares)
    writes_out_buffer = writes_grad_buffer = True

    @staticmethod
    def writes_work_buffer(x, weight, bias, view, axes, param_shape, eps, stats, running):
        """Whether forward writes xhat into ``ctx.work_buffer`` (the general path, batch
        statistics)."""
        return stats is None and not _per_channel(x, view, axes, param_shape, stats)

    @staticmethod
    def forward(ctx, x, weight, bias, view, axes, param_shape, eps, stats, running):
        xp = ctx.xp
        ctx.per_channel = _per_channel(x, view, axes, param_shape, stats)
        if ctx.per_channel:
            return _channel_forward(ctx, xp, x, weight, bias, eps, stats, running)
        if stats is None:
            xv = x.reshape(view)
            mean = xv.mean(axis=axes, keepdims=True)
            # a replay's buffers: xhat in the work buffer, the squares in the output's (read
            # before the output is written)
            work, out = ctx.work_buffer, ctx.out_buffer
            xhat = xp.subtract(xv, mean, out=None if work is None else work.reshape(view))
            squares = xp.multiply(xhat, xhat, out=None if out is None else out.reshape(view))
            var = squares.mean(axis=axes, keepdims=True)
            squares = None
            if running is not None:
                _update_running(running, mean, var, math.prod(view[a] for a in axes))
        else:
            mean, var = (s.reshape(param_shape) for s in stats)
            xhat = x - mean
        invstd = 1.0 / xp.sqrt(var + eps)
        xhat *= invstd
        xhat = xhat.reshape(x.shape)
        if weight is not None:
            y = xp.multiply(xhat, weight.reshape(param_shape), out=ctx.out_buffer)
            if bias is not None:
                y += bias.reshape(param_shape)
        else:
            y = xhat if bias is None else xhat + bias.reshape(param_shape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.view, ctx.axes, ctx.param_shape = view, axes, param_shape
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.batch_stats = stats is None
        return y

    @staticmethod
    def backward(ctx, grad):
        if ctx.per_channel:
            return _channel_backward(ctx, ctx.xp, grad) + (None,) * 6
        xhat, invstd, weight = ctx.saved_tensors
        xp = ctx.xp
        gw = gb = None
        pshape = ctx.param_shape
        buf = ctx.grad_buffer  # a replay's, for grad * xhat, then the input gradient
        if buf is not None and math.prod(pshape) == grad.size:
            buf = None  # (the weight gradient would be grad * xhat itself)
        if ctx.needs_input_grad[1]:
            gw = unbroadcast(xp, xp.multiply(grad, xhat, out=buf), pshape).reshape(weight.shape)
        if ctx.needs_input_grad[2]:
            gb = unbroadcast(xp, grad, pshape).reshape(ctx.bias_shape)
        gx = None
        if ctx.needs_input_grad[0]:
            if ctx.batch_stats:
                gx = _general_input_grad(ctx, grad, xhat, invstd, weight, buf)
            else:
                gx = grad if weight is None else grad * weight.reshape(pshape)
                gx = gx * invstd
        return gx, gw, gb, None, None, None, None, None, None


def _general_input_grad(ctx, grad, xhat, invstd, weight, buf):
    """The general path's input gradient with batch statistics, d/dx of the standardisation:
    gx = (gv - mean(gv) - xhat * mean(gv * xhat)) * invstd with gv = grad * weight, in one
    full-size array (``buf`` when given) and one temporary."""
    xp = ctx.xp
    if weight is not None:
        gv = xp.multiply(grad, weight.reshape(ctx.param_shape), out=buf)
    elif buf is None:
        gv = grad.copy()
    else:
        gv = buf
        xp.copyto(gv, grad)
    gv = gv.reshape(ctx.view)
    hv, axes = xhat.reshape(ctx.view), ctx.axes
    centre = gv.mean(axis=axes, keepdims=True)
    along = gv * hv
    along = xp.multiply(hv, along.mean(axis=axes, keepdims=True), out=along)
    xp.subtract(gv, centre, out=gv)
    xp.subtract(gv, along, out=gv)
    return xp.multiply(gv, invstd, out=gv).reshape(grad.shape)


# ---- statistics per channel (batch_norm): a few passes, no full-size temporaries -------------
def _per_channel(x, view, axes, param_shape, stats) -> bool:
    """Whether this is batch_norm's case: statistics and parameters per channel (axis 1),
    statistics over all other axes (or given)."""
    if x.ndim < 2 or tuple(view) != tuple(x.shape):
        return False
    if tuple(param_shape) != (1, x.shape[1]) + (1,) * (x.ndim - 2):
        return False
    if stats is not None:
        return True
    return axes is not None and tuple(axes) == (0,) + tuple(range(2, x.ndim))


def _channel_sums(xp, a, b=None):
    """Per-channel sums over (N, C, L) of ``a`` (or of ``a * b``), without a temporary."""
    if b is None:
        return a.sum(axis=(0, 2))
    return xp.einsum("ncl,ncl->c", a, b)


def _channel_forward(ctx, xp, x, weight, bias, eps, stats, running):
    """y = x * scale + shift per channel, scale = invstd * weight and shift = bias - mean *
    scale: two passes over x for the batch statistics (mean, then the centred sum of
    squares, chunk by chunk through a small buffer), one for the output."""
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1)
    if stats is None:
        count = x3.shape[0] * x3.shape[2]
        mean = _channel_sums(xp, x3) / count
        m = max(1, min(n, (1 << 20) // max(1, x3[0].nbytes)))
        centred = workspace(xp, "centred", (m,) + x3.shape[1:], x.dtype)
        sq = None
        for n0 in range(0, n, m):
            part = centred[: min(n, n0 + m) - n0]
            xp.subtract(x3[n0 : n0 + m], mean[:, None], out=part)
            s = _channel_sums(xp, part, part)
            sq = s if sq is None else sq + s
        var = sq / count
        if running is not None:
            _update_running(running, mean, var, count)
    else:
        mean, var = (s.reshape(c) for s in stats)
    invstd = 1.0 / xp.sqrt(var + eps)
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    out = ctx.out_buffer
    y = xp.multiply(
        x3,
        scale[:, None].astype(x.dtype, copy=False),
        out=None if out is None else out.reshape(x3.shape),
    )
    y += shift[:, None].astype(x.dtype, copy=False)
    ctx.save_for_backward(x, weight)
    ctx.stats, ctx.batch_stats = (mean, invstd), stats is None
    ctx.bias_shape = None if bias is None else bias.shape
    return y.reshape(x.shape)


def _channel_backward(ctx, xp, grad):
    """With xhat = (x - mean) * invstd and S = sum(grad * xhat) per channel: the bias
    gradient is sum(grad), the weight's S, and x's (weight * invstd) * (grad - sum(grad)/M -
    xhat * S/M) with batch statistics (M values per channel), else weight * invstd * grad;
    written as a * grad + k1 * x + k0 per channel, one pass."""
    x, weight = ctx.saved_tensors
    mean, invstd = ctx.stats
    n, c = x.shape[:2]
    x3, g3 = x.reshape(n, c, -1), grad.reshape(n, c, -1)
    gsum = _channel_sums(xp, g3)
    s = invstd * (_channel_sums(xp, g3, x3) - mean * gsum)
    gw = s if ctx.needs_input_grad[1] else None
    gb = gsum.reshape(ctx.bias_shape) if ctx.needs_input_grad[2] else None
    gx = None
    if ctx.needs_input_grad[0]:
        a = invstd if weight is None else invstd * weight
        buf = ctx.grad_buffer
        gx = xp.multiply(
            g3,
            a[:, None].astype(grad.dtype, copy=False),
            out=None if buf is None else buf.reshape(g3.shape),
        )
        if ctx.batch_stats:
            m = x3.shape[0] * x3.shape[2]
            k1 = -a * invstd * s / m
            k0 = -a * gsum / m - k1 * mean
            m_ = max(1, min(n, (1 << 20) // max(1, x3[0].nbytes)))
            tmp = workspace(xp, "centred", (m_,) + x3.shape[1:], x.dtype)
            for n0 in range(0, n, m_):
                part = tmp[: min(n, n0 + m_) - n0]
                xp.multiply(x3[n0 : n0 + m_], k1[:, None].astype(x.dtype, copy=False), out=part)
                part += k0[:, None].astype(x.dtype, copy=False)
                gx[n0 : n0 + m_] += part
        gx = gx.reshape(x.shape)
    return gx, gw, gb


def _update_running(running, mean, var, count: int) -> None:
    rm, rv, momentum = running
    unbiased = count / (count - 1)
    if rm is not None:
        rm *= 1 - momentum
        rm += momentum * mean.reshape(-1, rm.size).mean(axis=0).astype(rm.dtype)
    if rv is not None:
        rv *= 1 - momentum
        rv += (momentum * unbiased) * var.reshape(-1, rv.size).mean(axis=0).astype(rv.dtype)


# ---- argument checks ---------------------------------------------------------------------------
def _check(op, input, weight, bias, param_shape, min_ndim, *buffers):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected input to be a Tensor, got {type(input).__name__}")
    if input.ndim < min_ndim:
        raise ValueError(
            f"{op}: expected an input of at least {min_ndim} dimensions, got input "
            f"of size {list(input.shape)}"
        )
    if not input.is_floating_point():
        raise RuntimeError(f"{op}: expected a floating point input, got {input.dtype}")
    for name, t in (("weight", weight), ("bias", bias)) + buffers:
        if t is None:
            continue
        if tuple(t.shape) != tuple(param_shape):
            raise RuntimeError(
                f"{op}: expected {name} of shape {list(param_shape)} for input "
                f"of size {list(input.shape)}, but got {name} of size "
                f"{list(t.shape)}"
            )
        if t.dtype != input.dtype and name in ("weight", "bias") and not autocasting(input, t):
            raise RuntimeError(
                f"{op}: input type ({input.dtype}) and {name} type ({t.dtype}) should be the same"
            )
    check_same_device(op, input, weight, bias, *(t for _, t in buffers))


def _channel_params(input):
    c = input.shape[1]
    return (c,), (1, c) + (1,) * (input.ndim - 2)


def _arrays(*tensors):
    return tuple(None if t is None else t.array for t in tensors)


def _bump(*tensors):
    for t in tensors:
        if t is not None:
            t.bump_version()


def _need_spread(op, input, count):
    if count <= 1:
        raise ValueError(
            f"{op}: Expected more than 1 value per channel when training, got "
            f"input size {list(input.shape)}"
        )


def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Normalise ``(N, C, *)`` per channel over the batch and spatial axes. Training uses the
    batch's (biased) variance and updates the running stats in place (the variance unbiased);
    evaluation uses the running stats."""
    op = "batch_norm"
    (c,), pshape = (
        _channel_params(input) if isinstance(input, Tensor) and input.ndim >= 2 else ((None,), None)
    )
    _check(
        op,
        input,
        weight,
        bias,
        (c,),
        2,
        ("running_mean", running_mean),
        ("running_var", running_var),
    )
    axes = (0,) + tuple(range(2, input.ndim))
    if training:
        _need_spread(op, input, input.numel() // max(c, 1))
        return _normalize_batch_stats(
            input, weight, bias, axes, pshape, eps, running_mean, running_var, momentum
        )
    if running_mean is None or running_var is None:
        raise RuntimeError(
            f"{op}: running_mean and running_var must be given when training is False"
        )
    return Normalize.apply(
        input,
        weight,
        bias,
        input.shape,
        axes,
        pshape,
        eps,
        _arrays(running_mean, running_var),
        None,
    )


def _normalize_batch_stats(
    input, weight, bias, axes, pshape, eps, running_mean, running_var, momentum
):
    """Normalise with the statistics of ``input`` over ``axes``, updating the running stats
    (when given) in place."""
    running = None
    if running_mean is not None or running_var is not None:
        running = _arrays(running_mean, running_var) + (momentum,)
    y = Normalize.apply(input, weight, bias, input.shape, axes, pshape, eps, None, running)
    _bump(running_mean, running_var)
    return y


def instance_norm(
    input,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    use_input_stats=True,
    momentum=0.1,
    eps=1e-5,
):
    """Normalise ``(N, C, *)`` per sample and channel over the spatial axes; with running stats,
    updates them (``use_input_stats``) or uses them instead."""
    op = "instance_norm"
    (c,), pshape = (
        _channel_params(input) if isinstance(input, Tensor) and input.ndim >= 3 else ((None,), None)
    )
    _check(
        op,
        input,
        weight,
        bias,
        (c,),
        3,
        ("running_mean", running_mean),
        ("running_var", running_var),
    )
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise RuntimeError(
                f"{op}: running_mean and running_var must be given when use_input_stats is False"
            )
        return Normalize.apply(
            input,
            weight,
            bias,
            input.shape,
            None,
            pshape,
            eps,
            _arrays(running_mean, running_var),
            None,
        )
    axes = tuple(range(2, input.ndim))
    _need_spread(op, input, math.prod(input.shape[2:]))
    return _normalize_batch_stats(
        input, weight, bias, axes, pshape, eps, running_mean, running_var, momentum
    )


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``normalized_shape`` dimensions; weight and bias have that
    shape."""
    shape = (
        (normalized_shape,)
        if isinstance(normalized_shape, int)
        else tuple(int(s) for s in normalized_shape)
    )
    k = len(shape)
    if (
        not isinstance(input, Tensor)
        or k == 0
        or tuple(input.shape[input.ndim - k :]) != shape
        or input.ndim < k
    ):
        size = list(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise RuntimeError(
            f"layer_norm: Given normalized_shape={list(shape)}, expected input "
            f"with shape [*, {', '.join(map(str, shape))}], but got input of "
            f"size{size}"
        )
    _check("layer_norm", input, weight, bias, shape, k)
    axes = tuple(range(input.ndim - k, input.ndim))
    return Normalize.apply(input, weight, bias, input.shape, axes, shape, eps, None, None)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise ``(N, C, *)`` over each group of C/num_groups channels (and the spatial axes);
    weight and bias are per channel."""
    op = "group_norm"
    (c,), pshape = (
        _channel_params(input) if isinstance(input, Tensor) and input.ndim >= 2 else ((None,), None)
    )
    _check(op, input, weight, bias, (c,), 2)
    if num_groups < 1 or c % num_groups:
        raise RuntimeError(
            f"{op}: Expected number of channels in input to be divisible by "
            f"num_groups, but got input of shape {list(input.shape)} and "
            f"num_groups={num_groups}"
        )
    n = input.shape[0]
    view = (n, num_groups, input.numel() // max(n * num_groups, 1))
    return Normalize.apply(input, weight, bias, view, (2,), pshape, eps, None, None)
