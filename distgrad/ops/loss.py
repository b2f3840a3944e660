"""Loss functions with PyTorch's semantics (``torch.nn.functional``): cross entropy (fused with
log-softmax) and NLL over class indices or class probabilities, regression losses, binary
cross entropy and KL divergence.

``reduction`` is ``'mean'`` (the default), ``'sum'`` or ``'none'``; the deprecated
``size_average``/``reduce`` arguments are still understood. Class weights, ``pos_weight`` and
the like are constants (as in PyTorch, they receive no gradient); inputs and float targets are
differentiable, twice.
"""

from __future__ import annotations

import warnings

from ..autograd import Op, Tensor
from ..backend import array_module_for
from ._helpers import check_broadcast, check_same_device, unbroadcast
from ._stable import logsumexp_shift, stable_sigmoid, stable_softplus

__all__ = [
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
]


# ---- shared plumbing ----------------------------------------------------------------------
def _reduction(size_average, reduce, reduction, allowed=("none", "mean", "sum")):
    """``reduction``, or the one the deprecated ``size_average``/``reduce`` pair stands for."""
    if size_average is not None or reduce is not None:
        warnings.warn(
            "size_average and reduce args will be deprecated, please use "
            "reduction='mean'/'sum'/'none' instead.",
            stacklevel=3,
        )
        if reduce is False:
            return "none"
        return "sum" if size_average is False else "mean"
    if reduction not in allowed:
        raise ValueError(
            f"{reduction} is not a valid value for reduction (expected one of "
            f"{', '.join(map(repr, allowed))})"
        )
    return reduction


def _reduce(loss, reduction, denom):
    """Reduce per-element losses: as they are, their sum, or their sum over ``denom``."""
    if reduction == "none":
        return loss
    total = loss.sum()
    return total if reduction == "sum" else total / denom


def _scaled(ctx, g):
    """The incoming gradient divided by the denominator of a mean."""
    return g if ctx.reduction in ("none", "sum") else g / ctx.denom


def _float_input(op, input):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: expected input to be a Tensor, got {type(input).__name__}")
    if not input.is_floating_point():
        raise TypeError(
            f"{op}: expected a floating-point input, got {input.dtype} of shape {list(input.shape)}"
        )
    return input


def _like_input(op, input, target):
    """``target`` as a tensor of ``input``'s dtype (the cast is differentiable)."""
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected target to be a Tensor, got {type(target).__name__}")
    check_same_device(op, input, target)
    return target if target.dtype == input.dtype else target.to(input.dtype)


def _constant(op, name, value, input):
    """An optional weight tensor as a raw array of ``input``'s dtype (weights get no grad)."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor or None, got {type(value).__name__}")
    check_same_device(op, input, value)
    return value.array.astype(input.array.dtype, copy=False)


# ---- cross entropy and NLL over classes ---------------------------------------------------
# The Functions see 2-D inputs, (rows, classes): the wrappers move the class dim of
# (N, C, d1, ...) inputs last and flatten the rest (differentiably), and reshape a 'none'
# result back. Per-row values (targets, weights) are (rows, 1) columns.
def _rows(a):
    return array_module_for(a).arange(a.shape[0])


def _softmax_terms(xp, x):
    """``(z, e, se)``: the shifted logits, ``exp(z)`` and its row sums, so that
    ``softmax = e / se`` and ``log_softmax = z - log(se)``."""
    z = x - logsumexp_shift(x, 1)
    e = xp.exp(z)
    return z, e, xp.sum(e, axis=1, keepdims=True)


def _subtract_onehot(xp, p, t, classes) -> None:
    """``p -= (t == classes)`` in place: 1 subtracted at each row's target class only, when
    every target is a class (``p - 0`` is ``p``, so the values are the same)."""
    rows = t.ravel()
    if rows.size == p.shape[0] and bool(((rows >= 0) & (rows < p.shape[1])).all()):
        p[_rows(p), rows] -= 1
    else:  # ignored rows (ignore_index): no class to subtract from
        xp.subtract(p, t == classes, out=p)


class _ClassLoss(Op):
    """Shared by the losses over classes: reduction state, and the incoming gradient as a
    column (divided by the denominator of a mean)."""

    autocast = "float32"

    @staticmethod
    def _setup(ctx, x, denom, reduction):
        ctx.denom, ctx.reduction = denom, reduction
        ctx.classes = ctx.xp.arange(x.shape[1])

    @staticmethod
    def _coef(ctx, g):
        return _scaled(ctx, ctx.xp.reshape(g, (-1, 1)) if ctx.reduction == "none" else g)


class CrossEntropy(_ClassLoss):
    """Cross entropy of logits ``x`` against class indices ``t``, fused with log-softmax. With
    ``lse`` the row's log-sum-exp, row ``i`` loses
    ``w[i] * (lse[i] - x[i, t[i]]) + v[i] * sum_c s[c] * (lse[i] - x[i, c])``: ``w`` the
    target's class weight times ``1 - label_smoothing`` (0 where ignored), ``v`` 1 where not
    ignored, ``s`` the smoothing weights (``label_smoothing / C`` times the class weights) or
    None."""

    # jit buffer planning: forward's exp(z) goes into ctx.work_buffer and is kept for the
    # replayed backward (ctx.grad_buffer), which then does not recompute it
    writes_grad_buffer = writes_work_buffer = True

    @staticmethod
    def forward(ctx, x, t, w, v, s, denom, reduction):
        xp = ctx.xp
        CrossEntropy._setup(ctx, x, denom, reduction)
        # a replay's work buffer takes z, then exp(z) in place, kept for backward
        work = ctx.work_buffer if s is None else None
        z = xp.subtract(x, logsumexp_shift(x, 1), out=work)
        picked = z[_rows(z), t.ravel()][:, None]
        smoothed = None if s is None else (z * s).sum(axis=1, keepdims=True)
        e = xp.exp(z, out=work)
        se = xp.sum(e, axis=1, keepdims=True)
        if work is not None:
            ctx.softmax_terms = e, se
        lse = xp.log(se)
        loss = (lse - picked) * w
        if s is not None:
            loss += v * (lse * s.sum() - smoothed)
        ctx.save_for_backward(x, t, w, v, s)
        return _reduce(loss.ravel(), reduction, denom)

    @staticmethod
    def backward(ctx, g):
        x, t, w, v, s = ctx.saved_tensors
        xp = ctx.xp
        coef = CrossEntropy._coef(ctx, g)
        if s is None and ctx.grad_buffer is not None:  # a replay: the same values, in place
            terms = getattr(ctx, "softmax_terms", None)
            if terms is None:
                p = xp.subtract(x, logsumexp_shift(x, 1), out=ctx.grad_buffer)
                xp.exp(p, out=p)
                xp.divide(p, xp.sum(p, axis=1, keepdims=True), out=p)
            else:
                p = xp.divide(terms[0], terms[1], out=ctx.grad_buffer)
            _subtract_onehot(xp, p, t, ctx.classes)
            return xp.multiply(p, w * coef, out=p), None, None, None, None, None, None
        onehot = t == ctx.classes
        _, e, se = _softmax_terms(xp, x)
        p = e / se
        if s is None:
            grad = (p - onehot) * (w * coef)
        else:
            grad = (p * (w + v * xp.sum(s)) - onehot * w - v * s) * coef
        return grad, None, None, None, None, None, None


class SoftCrossEntropy(_ClassLoss):
    """Cross entropy of logits ``x`` against per-class target weights ``q`` (class
    probabilities, smoothed and weighted): ``sum_c q[i, c] * (lse[i] - x[i, c])``."""

    @staticmethod
    def forward(ctx, x, q, denom, reduction):
        xp = ctx.xp
        SoftCrossEntropy._setup(ctx, x, denom, reduction)
        z, _, se = _softmax_terms(xp, x)
        ctx.save_for_backward(x, q)
        return _reduce(((xp.log(se) - z) * q).sum(axis=1), reduction, denom)

    @staticmethod
    def backward(ctx, g):
        x, q = ctx.saved_tensors
        xp = ctx.xp
        coef = SoftCrossEntropy._coef(ctx, g)
        z, e, se = _softmax_terms(xp, x)
        gx = gq = None
        if ctx.needs_input_grad[0]:
            gx = (e / se * xp.sum(q, axis=1, keepdims=True) - q) * coef
        if ctx.needs_input_grad[1]:
            gq = (xp.log(se) - z) * coef
        return gx, gq, None, None


class NLLLoss(_ClassLoss):
    """``-w[i] * x[i, t[i]]``: negative log-likelihood of log-probabilities ``x``."""

    @staticmethod
    def forward(ctx, x, t, w, denom, reduction):
        NLLLoss._setup(ctx, x, denom, reduction)
        ctx.save_for_backward(t, w)
        loss = -x[_rows(x), t.ravel()] * w.ravel()
        return _reduce(loss, reduction, denom)

    @staticmethod
    def backward(ctx, g):
        t, w = ctx.saved_tensors
        grad = -((t == ctx.classes) * (w * NLLLoss._coef(ctx, g)))
        return grad, None, None, None, None


def _class_layout(op, input):
    """``(rows, batch_shape)``: ``input`` as (rows, classes) and the shape of a 'none' result
    (the input's without the class dim: dim 1, or dim 0 of a 1-D input)."""
    if input.ndim == 0:
        raise ValueError(
            f"{op}: expected an input with 1 or more dimensions (classes, or "
            f"batch x classes x ...), got a 0-d tensor"
        )
    if input.ndim == 1:
        return input.reshape(1, -1), ()
    batch = (input.shape[0],) + tuple(input.shape[2:])
    if input.ndim == 2:
        return input, batch
    return input.movedim(1, -1).reshape(-1, input.shape[1]), batch


def _unflatten(loss, reduction, batch):
    return loss.reshape(batch) if reduction == "none" and loss.shape != batch else loss


def _class_weights(op, weight, input, classes):
    w = _constant(op, "weight", weight, input)
    if w is not None and w.shape != (classes,):
        raise RuntimeError(
            f"{op}: weight tensor should be defined either for all {classes} "
            f"classes or no classes but got weight tensor of shape: "
            f"{list(w.shape)}"
        )
    return w


def _index_targets(op, input, target, batch, weight, ignore_index):
    """Validate class-index targets; return ``(t, w, valid, class_weights, denom)`` as flat
    arrays: indices with ignored ones set to 0, each target's class weight (0 where ignored),
    the not-ignored mask, the class weights (or None) and the sum of ``w`` (a weighted mean's
    denominator)."""
    x = input.array
    if not isinstance(target, Tensor):
        raise TypeError(f"{op}: expected target to be a Tensor, got {type(target).__name__}")
    check_same_device(op, input, target)
    if target.array.dtype.kind not in "iu":
        raise RuntimeError(
            f"{op}: expected target of class indices (an integer tensor of shape "
            f"{list(batch)}) or of class probabilities (a float tensor of the input's shape "
            f"{list(x.shape)}), got a {target.dtype} target of shape {list(target.shape)}"
        )
    if tuple(target.shape) != batch:
        raise ValueError(
            f"{op}: expected target of shape {list(batch)} for input of shape "
            f"{list(x.shape)} (the input's shape without its class dim), got "
            f"target of shape {list(target.shape)}"
        )
    xp = input.device.xp
    classes = x.shape[0 if x.ndim == 1 else 1]
    valid = target.array.ravel() != ignore_index
    t = xp.where(valid, target.array.ravel(), 0)
    if t.size:
        bad = (t < 0) | (t >= classes)
        if bad.any():
            raise IndexError(
                f"{op}: target {int(t[bad][0])} is out of bounds for {classes} "
                f"classes (expected values in [0, {classes - 1}], or "
                f"ignore_index={ignore_index})"
            )
    cw = _class_weights(op, weight, input, classes)
    w = valid.astype(x.dtype) if cw is None else cw[t] * valid
    return t, w, valid, cw, w.sum()


def cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    """Cross entropy between logits ``input`` (classes on dim 1, or dim 0 for 1-D input) and
    ``target``: class indices (int, the input's shape without the class dim) or class
    probabilities (float, the input's shape). Fused with log-softmax; PyTorch's semantics for
    ``weight`` (a weighted mean divides by the summed weights of the non-ignored targets),
    ``ignore_index`` and ``label_smoothing``."""
    op = "cross_entropy"
    reduction = _reduction(size_average, reduce, reduction)
    input = _float_input(op, input)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"{op}: label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}"
        )
    x, batch = _class_layout(op, input)
    classes = x.shape[1]
    if isinstance(target, Tensor) and target.is_floating_point() and target.shape == input.shape:
        cw = _class_weights(op, weight, input, classes)
        q, _ = _class_layout(op, _like_input(op, input, target))
        if label_smoothing:
            q = q * (1 - label_smoothing) + label_smoothing / classes
        if cw is not None:
            q = q * cw
        loss = SoftCrossEntropy.apply(x, q, x.shape[0], reduction)
        return _unflatten(loss, reduction, batch)
    t, w, valid, cw, denom = _index_targets(op, input, target, batch, weight, ignore_index)
    v = s = None
    if label_smoothing:
        s = (label_smoothing / classes) * (
            input.device.xp.ones(classes, w.dtype) if cw is None else cw
        )
        v = valid.astype(w.dtype)[:, None]
        w = w * (1 - label_smoothing)
    loss = CrossEntropy.apply(x, t[:, None], w[:, None], v, s, denom, reduction)
    return _unflatten(loss, reduction, batch)


def nll_loss(
    input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"
):
    """Negative log-likelihood of log-probabilities ``input`` (classes on dim 1, or dim 0 for
    1-D input) at the class indices ``target``; ``weight`` and ``ignore_index`` as in
    ``cross_entropy``."""
    op = "nll_loss"
    reduction = _reduction(size_average, reduce, reduction)
    input = _float_input(op, input)
    x, batch = _class_layout(op, input)
    t, w, _, _, denom = _index_targets(op, input, target, batch, weight, ignore_index)
    return _unflatten(NLLLoss.apply(x, t[:, None], w[:, None], denom, reduction), reduction, batch)


# ---- elementwise losses -------------------------------------------------------------------
class _Pointwise(Op):
    """A loss ``loss(xp, x, t, *params)`` applied elementwise (with broadcasting) and reduced.
    Subclasses give the loss and its partial derivatives ``grad_input`` and (unless it is
    ``-grad_input``) ``grad_target``, written for arrays and tensors alike."""

    autocast = "float32"

    @classmethod
    def forward(cls, ctx, x, t, reduction, denom, params):
        loss = cls.loss(ctx.xp, x, t, *params)
        ctx.save_for_backward(x, t)
        ctx.reduction, ctx.params = reduction, params
        ctx.denom = loss.size if denom is None else denom
        return _reduce(loss, reduction, ctx.denom)

    @classmethod
    def backward(cls, ctx, g):
        x, t = ctx.saved_tensors
        xp = ctx.xp
        g = _scaled(ctx, g)
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = unbroadcast(xp, g * cls.grad_input(xp, x, t, *ctx.params), x.shape)
        if ctx.needs_input_grad[1]:
            gt = unbroadcast(xp, g * cls.grad_target(xp, x, t, *ctx.params), t.shape)
        return gx, gt, None, None, None

    @classmethod
    def grad_target(cls, xp, x, t, *params):
        return -cls.grad_input(xp, x, t, *params)


class MSELoss(_Pointwise):
    @staticmethod
    def loss(xp, x, t):
        d = x - t
        return d * d

    @staticmethod
    def grad_input(xp, x, t):
        return 2 * (x - t)


class L1Loss(_Pointwise):
    @staticmethod
    def loss(xp, x, t):
        return xp.abs(x - t)

    @staticmethod
    def grad_input(xp, x, t):
        return xp.sign(x - t)


class SmoothL1Loss(_Pointwise):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = x - t``)."""

    @staticmethod
    def loss(xp, x, t, beta):
        d = x - t
        ad = xp.abs(d)
        return xp.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta)

    @staticmethod
    def grad_input(xp, x, t, beta):
        d = x - t
        return xp.where(xp.abs(d) < beta, d / beta, xp.sign(d))


class HuberLoss(_Pointwise):
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)`` (``d = x - t``)."""

    @staticmethod
    def loss(xp, x, t, delta):
        d = x - t
        ad = xp.abs(d)
        return xp.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))

    @staticmethod
    def grad_input(xp, x, t, delta):
        d = x - t
        return xp.where(xp.abs(d) < delta, d, delta * xp.sign(d))


def _clamped_log(xp, p):
    """``log(p)`` clamped below at -100, as PyTorch's binary cross entropy does."""
    return xp.maximum(xp.log(xp.maximum(p, 1e-44)), -100)


def _weighted(value, w):
    return value if w is None else value * w


class BCELoss(_Pointwise):
    @staticmethod
    def loss(xp, x, t, w):
        return _weighted(-(t * _clamped_log(xp, x) + (1 - t) * _clamped_log(xp, 1 - x)), w)

    @staticmethod
    def grad_input(xp, x, t, w):
        return _weighted((x - t) / xp.maximum(x * (1 - x), 1e-12), w)

    @staticmethod
    def grad_target(xp, x, t, w):
        return _weighted(_clamped_log(xp, 1 - x) - _clamped_log(xp, x), w)


class BCEWithLogitsLoss(_Pointwise):
    """``(1 - t) x + (1 + (pos_weight - 1) t) softplus(-x)``, times ``weight``."""

    @staticmethod
    def loss(xp, x, t, w, pw):
        lw = 1 if pw is None else t * (pw - 1) + 1
        return _weighted((1 - t) * x + lw * stable_softplus(xp, -x), w)

    @staticmethod
    def grad_input(xp, x, t, w, pw):
        lw = 1 if pw is None else t * (pw - 1) + 1
        return _weighted(1 - t - lw * stable_sigmoid(xp, -x), w)

    @staticmethod
    def grad_target(xp, x, t, w, pw):
        g = -x if pw is None else stable_softplus(xp, -x) * (pw - 1) - x
        return _weighted(g, w)


class KLDivLoss(_Pointwise):
    """``t (log t - x)`` (0 where ``t = 0``), or ``exp(t) (t - x)`` for log-space targets."""

    @staticmethod
    def loss(xp, x, t, log_target):
        if log_target:
            return xp.exp(t) * (t - x)
        return xp.where(t > 0, t * (xp.log(xp.where(t > 0, t, 1)) - x), 0)

    @staticmethod
    def grad_input(xp, x, t, log_target):
        return -xp.exp(t) if log_target else -t

    @staticmethod
    def grad_target(xp, x, t, log_target):
        if log_target:
            return xp.exp(t) * (t - x + 1)
        return xp.log(xp.where(t > 0, t, 1)) + 1 - x


def _pointwise(fn, op, input, target, reduction, params=(), denom=None, same_shape=False):
    input = _float_input(op, input)
    target = _like_input(op, input, target)
    if target.shape != input.shape:
        check_broadcast(op, input.shape, target.shape)
        if same_shape:
            raise ValueError(
                f"{op}: Using a target size ({list(target.shape)}) that is "
                f"different to the input size ({list(input.shape)}) is not "
                f"supported. Please ensure they have the same size."
            )
        warnings.warn(
            f"{op}: Using a target size ({list(target.shape)}) that is different to "
            f"the input size ({list(input.shape)}). This will likely lead to "
            f"incorrect results due to broadcasting. Please ensure they have the "
            f"same size.",
            stacklevel=3,
        )
    return fn.apply(input, target, reduction, denom, params)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Squared error ``(input - target)^2``, reduced."""
    return _pointwise(
        MSELoss, "mse_loss", input, target, _reduction(size_average, reduce, reduction)
    )


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Absolute error ``|input - target|``, reduced."""
    return _pointwise(L1Loss, "l1_loss", input, target, _reduction(size_average, reduce, reduction))


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """Squared error below ``beta`` (scaled by ``1/beta``), absolute error above; with
    ``beta=0`` it is ``l1_loss``."""
    reduction = _reduction(size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0:
        return _pointwise(L1Loss, "smooth_l1_loss", input, target, reduction)
    return _pointwise(SmoothL1Loss, "smooth_l1_loss", input, target, reduction, (beta,))


def huber_loss(input, target, reduction="mean", delta=1.0):
    """Squared error below ``delta``, ``delta``-scaled absolute error above."""
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    return _pointwise(
        HuberLoss, "huber_loss", input, target, _reduction(None, None, reduction), (delta,)
    )


def binary_cross_entropy(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean"
):
    """``-(t log(p) + (1 - t) log(1 - p))`` for probabilities ``input`` (logs clamped at
    -100, as in PyTorch), times ``weight`` (broadcast to the input)."""
    op = "binary_cross_entropy"
    reduction = _reduction(size_average, reduce, reduction)
    x = _float_input(op, input).array
    if x.size and bool(((x < 0) | (x > 1)).any()):
        raise RuntimeError(f"{op}: all elements of input should be between 0 and 1")
    return _pointwise(
        BCELoss,
        op,
        input,
        target,
        reduction,
        (_constant(op, "weight", weight, input),),
        same_shape=True,
    )


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None
):
    """Binary cross entropy of ``sigmoid(input)``, computed stably from the logits;
    ``pos_weight`` (broadcast along the last dim) weighs the positive term."""
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction(size_average, reduce, reduction)
    input = _float_input(op, input)
    params = (
        _constant(op, "weight", weight, input),
        _constant(op, "pos_weight", pos_weight, input),
    )
    return _pointwise(BCEWithLogitsLoss, op, input, target, reduction, params, same_shape=True)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """Kullback-Leibler divergence ``target * (log(target) - input)`` with ``input`` in
    log-space (and ``target`` too if ``log_target``). ``reduction='batchmean'`` divides the sum
    by the batch size (dim 0), the mathematically meaningful mean."""
    reduction = _reduction(
        size_average, reduce, reduction, allowed=("none", "mean", "sum", "batchmean")
    )
    denom = None
    if reduction == "batchmean":
        denom = input.shape[0] if input.ndim else 1
    return _pointwise(KLDivLoss, "kl_div", input, target, reduction, (log_target,), denom)


# ---- losses composed of differentiable ops (first and higher-order gradients come free) ------
def _check_same_shape(op, *tensors):
    shapes = [tuple(t.shape) for t in tensors]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError(
            f"{op}: expected inputs of one shape, got {', '.join(str(list(s)) for s in shapes)}"
        )


def _composed_reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def cosine_embedding_loss(
    input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"
):
    """``1 - cos(x1, x2)`` where ``target`` is 1, ``max(0, cos(x1, x2) - margin)`` where -1
    (cosine over the last dim, PyTorch's eps of 1e-12 on the squared norms)."""
    reduction = _reduction(size_average, reduce, reduction)
    op = "cosine_embedding_loss"
    _float_input(op, input1)
    if input1.shape != input2.shape:
        raise RuntimeError(
            f"{op}: input1 and input2 must have the same shape, got {list(input1.shape)} and "
            f"{list(input2.shape)}"
        )
    if input1.ndim not in (1, 2):
        raise RuntimeError(
            f"{op}: expected 1D or 2D inputs, got {input1.ndim}D of shape {list(input1.shape)}"
        )
    if tuple(target.shape) != tuple(input1.shape[:-1]):
        raise RuntimeError(
            f"{op}: expected target of shape {list(input1.shape[:-1])}, got {list(target.shape)}"
        )
    eps = 1e-12
    prod = (input1 * input2).sum(-1)
    mag1 = (input1 * input1).sum(-1) + eps
    mag2 = (input2 * input2).sum(-1) + eps
    cos = prod / (mag1 * mag2).sqrt()
    t = target.to(input1.dtype)
    pos = (1 - cos) * (t == 1).to(cos.dtype)
    neg = (cos - margin).clamp(min=0) * (t == -1).to(cos.dtype)
    return _composed_reduce(pos + neg, reduction)


def margin_ranking_loss(
    input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"
):
    """``max(0, -target * (input1 - input2) + margin)``."""
    reduction = _reduction(size_average, reduce, reduction)
    op = "margin_ranking_loss"
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError(
            f"{op} : All input tensors should have same dimension but got sizes: input1: "
            f"{list(input1.shape)}, input2: {list(input2.shape)}, target: {list(target.shape)} "
        )
    loss = (-target.to(input1.dtype) * (input1 - input2) + margin).clamp(min=0)
    return _composed_reduce(loss, reduction)


def hinge_embedding_loss(
    input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"
):
    """``input`` where ``target`` is 1, ``max(0, margin - input)`` where it is -1."""
    reduction = _reduction(size_average, reduce, reduction)
    _float_input("hinge_embedding_loss", input)
    t = target.to(input.dtype)
    out_margin = (margin - input).clamp(min=0) * (t != 1).to(input.dtype)
    out_self = input * (t != -1).to(input.dtype)
    return _composed_reduce(out_margin + out_self, reduction)


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """``log(1 + exp(-target * input))``."""
    from .activation import softplus

    reduction = _reduction(size_average, reduce, reduction)
    _float_input("soft_margin_loss", input)
    return _composed_reduce(softplus(-target.to(input.dtype) * input), reduction)


def triplet_margin_loss(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2,
    eps=1e-6,
    swap=False,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with ``d`` the ``p``-norm of the difference
    (plus ``eps``) over the last dim; ``swap`` uses ``min(d(a, n), d(p, n))``."""
    reduction = _reduction(size_average, reduce, reduction)
    op = "triplet_margin_loss"
    dims = (anchor.ndim, positive.ndim, negative.ndim)
    if len(set(dims)) != 1:
        raise RuntimeError(
            f"The anchor, positive, and negative tensors are expected to have the same number "
            f"of dimensions, but got: anchor {dims[0]}D, positive {dims[1]}D, and negative "
            f"{dims[2]}D inputs"
        )
    _float_input(op, anchor)

    def dist(x, y):
        d = (x - y + eps).abs()
        return (d**p).sum(-1) ** (1.0 / p)

    d_pos, d_neg = dist(anchor, positive), dist(anchor, negative)
    if swap:
        d_swap = dist(positive, negative)
        d_neg = d_neg.minimum(d_swap)
    return _composed_reduce((d_pos - d_neg + margin).clamp(min=0), reduction)


def poisson_nll_loss(
    input,
    target,
    log_input=True,
    full=False,
    size_average=None,
    eps=1e-8,
    reduce=None,
    reduction="mean",
):
    """Poisson negative log-likelihood: ``exp(input) - target * input`` (``log_input``) or
    ``input - target * log(input + eps)``; ``full`` adds Stirling's term for targets > 1."""
    import math

    reduction = _reduction(size_average, reduce, reduction)
    _float_input("poisson_nll_loss", input)
    t = target.to(input.dtype)
    loss = input.exp() - t * input if log_input else input - t * (input + eps).log()
    if full:
        stirling = t * t.clamp(min=1).log() - t + 0.5 * (2 * math.pi * t.clamp(min=1)).log()
        loss = loss + stirling * (t > 1).to(input.dtype)
    return _composed_reduce(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """``0.5 * (log(max(var, eps)) + (input - target)^2 / max(var, eps))`` (+ ``0.5 log(2 pi)``
    when ``full``); ``var`` is one per element or one per sample (last dim 1 or missing)."""
    import math

    op = "gaussian_nll_loss"
    _float_input(op, input)
    if var.shape != input.shape:
        if input.shape[:-1] == var.shape:
            var = var.unsqueeze(-1)
        elif not (input.shape[:-1] == var.shape[:-1] and var.shape[-1] == 1):
            raise ValueError("var is of incorrect size")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not valid")
    if bool((var.detach() < 0).any()):
        raise ValueError("var has negative entry/entries")
    from ..autograd import no_grad

    with no_grad():  # PyTorch clamps var in place, outside autograd
        floor = var.detach().clamp(min=eps) - var.detach()
    var = var + floor
    loss = 0.5 * (var.log() + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _composed_reduce(loss, reduction)


def multilabel_soft_margin_loss(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean"
):
    """Binary cross-entropy with logits per class, averaged over the classes (last dim)."""
    from .activation import logsigmoid

    reduction = _reduction(size_average, reduce, reduction)
    _float_input("multilabel_soft_margin_loss", input)
    t = target.to(input.dtype)
    loss = -(t * logsigmoid(input) + (1 - t) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    loss = loss.sum(-1) / input.shape[-1]
    return _composed_reduce(loss, reduction)


__all__ += [
    "cosine_embedding_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "soft_margin_loss",
    "triplet_margin_loss",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "multilabel_soft_margin_loss",
]
