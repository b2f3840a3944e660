"""Activation functions (``relu``, ``gelu``, ``silu``, ...) and the error function ``erf``.

Each activation takes ``inplace=`` where ``torch.nn.functional``'s does; the piecewise-linear
ones differentiate to a mask (their second derivative is zero), the smooth ones are
differentiable any number of times. ``sigmoid`` and ``tanh`` live in ``elementwise``; softmax
and log_softmax in ``reduction``.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd import Op, Tensor
from ..backend import get_default_dtype
from ._helpers import apply_inplace, as_tensor, graph_xp, tensor_method, unbroadcast
from ._stable import stable_sigmoid, stable_softplus

__all__ = [
    "relu",
    "relu_",
    "leaky_relu",
    "leaky_relu_",
    "elu",
    "elu_",
    "selu",
    "selu_",
    "celu",
    "celu_",
    "gelu",
    "silu",
    "mish",
    "softplus",
    "hardtanh",
    "hardtanh_",
    "relu6",
    "hardsigmoid",
    "hardswish",
    "logsigmoid",
    "softsign",
    "tanhshrink",
    "threshold",
    "threshold_",
    "hardshrink",
    "softshrink",
    "prelu",
    "erf",
    "erf_",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _floating(x):
    x = as_tensor(x)
    return x if x.is_floating_point() else x.to(get_default_dtype())


def _run(fn, input, *args, inplace=False, name=None):
    """``fn.apply(input, *args)``, or the same written into ``input`` when ``inplace``."""
    if inplace:
        return apply_inplace(input, name, lambda s: fn.apply(s, *args))
    return fn.apply(_floating(input), *args)


# ---- the error function -------------------------------------------------------------------
# Rational approximations of fdlibm's s_erf.c (Sun Microsystems, 1993), accurate to < 1 ulp in
# float64; coefficients in increasing powers.
_ERX = 8.45062911510467529297e-01
_PP = (
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
)
_QQ = (
    1.0,
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
)
_PA = (
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
)
_QA = (
    1.0,
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
)
_RA = (
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e01,
    -6.23753324503260060396e01,
    -1.62396669462573470355e02,
    -1.84605092906711035994e02,
    -8.12874355063065934246e01,
    -9.81432934416914548592e00,
)
_SA = (
    1.0,
    1.96512716674392571292e01,
    1.37657754143519042600e02,
    4.34565877475229228821e02,
    6.45387271733267880336e02,
    4.29008140027567833386e02,
    1.08635005541779435134e02,
    6.57024977031928170135e00,
    -6.04244152148580987438e-02,
)
_RB = (
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e01,
    -1.60636384855821916062e02,
    -6.37566443368389627722e02,
    -1.02509513161107724954e03,
    -4.83519191608651397019e02,
)
_SB = (
    1.0,
    3.03380607434824582924e01,
    3.25792512996573918826e02,
    1.53672958608443695994e03,
    3.19985821950859553908e03,
    2.55305040643316442583e03,
    4.74528541206955367215e02,
    -2.24409524465858183362e01,
)


def _poly(coeffs, t):
    """Horner's rule on an array, in place after the first product."""
    r = t * coeffs[-1]
    r += coeffs[-2]
    for c in coeffs[-3::-1]:
        r *= t
        r += c
    return r


def erf_array(xp, x):
    """``erf`` of a numpy/cupy float array. Each argument range is evaluated only on its own
    elements (gathered with ``take``, written back with ``put``)."""
    a = xp.abs(x).ravel()
    out = xp.minimum(a, 1)  # erf(|x| >= 6) is 1 to double precision; NaN stays NaN

    def part(lo, hi):
        idx = xp.flatnonzero((a >= lo) & (a < hi))
        return idx, a.take(idx)

    idx, t = part(0.0, 0.84375)
    z = t * t
    out.put(idx, t + t * (_poly(_PP, z) / _poly(_QQ, z)))
    idx, t = part(0.84375, 1.25)
    out.put(idx, _ERX + _poly(_PA, t - 1) / _poly(_QA, t - 1))
    for lo, hi, num, den in ((1.25, 1 / 0.35, _RA, _SA), (1 / 0.35, 6.0, _RB, _SB)):
        idx, t = part(lo, hi)
        s = 1 / (t * t)
        # erfc(t) = exp(-t^2 - 0.5625 + R(1/t^2) / S(1/t^2)) / t
        out.put(idx, 1 - xp.exp(-t * t - 0.5625 + _poly(num, s) / _poly(den, s)) / t)
    return xp.copysign(out.reshape(x.shape), x)


def _erf(xp, x):
    """erf in a backward formula: the array version, or the op when recording a graph."""
    return erf(x) if xp is graph_xp else erf_array(xp, x)


class Erf(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return erf_array(ctx.xp, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (2 / math.sqrt(math.pi)) * ctx.xp.exp(-x * x)


@tensor_method("erf")
def erf(input):
    """The error function ``2/sqrt(pi) * integral_0^x exp(-t^2) dt``."""
    return Erf.apply(_floating(input))


@tensor_method("erf_")
def erf_(input):
    """In-place :func:`erf`."""
    return apply_inplace(input, "erf_", erf)


graph_xp.register("erf")(erf)


# ---- piecewise-linear activations ---------------------------------------------------------
_ZERO_ROW = 4096
_ZEROS = {np.dtype(t): np.zeros((), t) for t in (np.float16, np.float32, np.float64)}


def positive_part(xp, x, out=None):
    """``max(x, 0)`` elementwise (into ``out`` if given). numpy's maximum against a scalar
    runs a branchy unvectorised loop, 2-3x slower than against an array, so a contiguous x
    is taken as rows against one row of zeros (the same values, NaN kept as maximum keeps it)."""
    row = math.gcd(x.size, _ZERO_ROW)
    if row < 64 or not x.flags.c_contiguous:
        zero = _ZEROS.get(x.dtype, 0) if xp is np else 0  # a 0-d array: no scalar conversion
        return xp.maximum(x, zero) if out is None else xp.maximum(x, zero, out=out)
    rows = x.reshape(-1, row)
    zero = xp.zeros(row, dtype=x.dtype)
    if out is None:
        return xp.maximum(rows, zero).reshape(x.shape)
    xp.maximum(rows, zero, out=out.reshape(-1, row))
    return out


class ReLU(Op):
    writes_out_buffer = writes_grad_buffer = True  # jit buffer planning (ctx.out_buffer)

    @staticmethod
    def forward(ctx, x):
        y = positive_part(ctx.xp, x, ctx.out_buffer)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        if ctx.grad_buffer is not None:  # the mask as 1.0/0.0 in the buffer: the same products
            mask = ctx.xp.greater(y, 0, out=ctx.grad_buffer)
            return ctx.xp.multiply(g, mask, out=mask)
        return g * (y > 0)


@tensor_method("relu")
def relu(input, inplace=False):
    """``max(input, 0)``."""
    if inplace:
        return relu_(input)
    return ReLU.apply(input if isinstance(input, Tensor) else as_tensor(input))


@tensor_method("relu_")
def relu_(input):
    """In-place :func:`relu`."""
    return apply_inplace(
        input, "relu_", relu, fast=lambda a: positive_part(input.device.xp, a, out=a)
    )


class LeakyReLU(Op):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return ctx.xp.where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return ctx.xp.where(x > 0, g, g * ctx.slope), None


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``input`` where positive, ``negative_slope * input`` elsewhere."""
    return _run(LeakyReLU, input, negative_slope, inplace=inplace, name="leaky_relu_")


def leaky_relu_(input, negative_slope=0.01):
    """In-place :func:`distgrad.nn.functional.leaky_relu`."""
    return leaky_relu(input, negative_slope, inplace=True)


class Hardtanh(Op):
    """Clamp into ``[lo, hi]``; unlike ``clamp`` the gradient is zero on the boundary (as in
    PyTorch's hardtanh and relu6)."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        return ctx.xp.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        return g * ((x > lo) & (x < hi)), None, None


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``input`` clamped into ``[min_val, max_val]``."""
    if min_val > max_val:
        raise ValueError(
            f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})"
        )
    return _run(Hardtanh, input, min_val, max_val, inplace=inplace, name="hardtanh_")


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    """In-place :func:`distgrad.nn.functional.hardtanh`."""
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input, inplace=False):
    """``min(max(input, 0), 6)``."""
    return hardtanh(input, 0.0, 6.0, inplace)


class Hardsigmoid(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.clip(x / 6 + 0.5, 0, 1)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ((x > -3) & (x < 3)) / 6


def hardsigmoid(input, inplace=False):
    """``relu6(input + 3) / 6``."""
    return _run(Hardsigmoid, input, inplace=inplace, name="hardsigmoid_")


class Hardswish(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * ctx.xp.clip(x + 3, 0, 6) / 6

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = ctx.xp
        return xp.where(x < -3, 0, xp.where(x <= 3, g * (x / 3 + 0.5), g))


def hardswish(input, inplace=False):
    """``input * relu6(input + 3) / 6``."""
    return _run(Hardswish, input, inplace=inplace, name="hardswish_")


class Threshold(Op):
    @staticmethod
    def forward(ctx, x, threshold, value):
        keep = x > threshold
        ctx.save_for_backward(keep)
        return ctx.xp.where(keep, x, value).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return g * keep, None, None


def threshold(input, threshold, value, inplace=False):
    """``input`` where it exceeds ``threshold``, else ``value``."""
    return _run(Threshold, input, threshold, value, inplace=inplace, name="threshold_")


def threshold_(input, threshold, value):
    """In-place :func:`distgrad.nn.functional.threshold`."""
    return _run(Threshold, input, threshold, value, inplace=True, name="threshold_")


class _Shrink(Op):
    """hardshrink (``soft=False``) and softshrink: zero on ``[-lambd, lambd]``."""

    @staticmethod
    def forward(ctx, x, lambd, soft):
        xp = ctx.xp
        keep = xp.abs(x) > lambd
        ctx.save_for_backward(keep)
        y = x - xp.sign(x) * lambd if soft else x
        return xp.where(keep, y, 0).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return g * keep, None, None


@tensor_method("hardshrink")
def hardshrink(input, lambd=0.5):
    """``input`` where ``|input| > lambd``, else 0."""
    return _Shrink.apply(_floating(input), lambd, False)


def softshrink(input, lambd=0.5):
    """``input - sign(input) * lambd`` where ``|input| > lambd``, else 0."""
    return _Shrink.apply(_floating(input), lambd, True)


class PReLU(Op):
    """leaky relu whose slope is a parameter: one per channel (dim 1) or a single one."""

    @staticmethod
    def forward(ctx, x, w):
        shape = [1] * x.ndim
        if w.size > 1:
            shape[1] = w.size
        wb = ctx.xp.reshape(w, shape)
        ctx.save_for_backward(x, w)
        ctx.shape = tuple(shape)
        return ctx.xp.where(x > 0, x, wb * x)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        xp = ctx.xp
        pos = x > 0
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = xp.where(pos, g, g * xp.reshape(w, ctx.shape))
        if ctx.needs_input_grad[1]:
            gw = xp.reshape(unbroadcast(xp, xp.where(pos, 0, g * x), ctx.shape), w.shape)
        return gx, gw


def prelu(input, weight):
    """``input`` where positive, else ``weight * input``; ``weight`` has one element or one
    per channel (``input``'s dim 1)."""
    channels = input.shape[1] if input.ndim >= 2 else 1
    if weight.ndim > 1 or weight.numel() not in (1, channels):
        raise RuntimeError(
            f"prelu: weight of shape {list(weight.shape)} must have 1 element or "
            f"one per channel ({channels}, dim 1 of input of shape "
            f"{list(input.shape)})"
        )
    return PReLU.apply(_floating(input), weight)


# ---- smooth activations -------------------------------------------------------------------
class ELU(Op):
    """``scale * (x if x > 0 else alpha * (exp(x * input_scale) - 1))``: elu, selu, celu."""

    @staticmethod
    def forward(ctx, x, alpha, scale, input_scale):
        xp = ctx.xp
        ctx.save_for_backward(x)
        ctx.params = (alpha, scale, input_scale)
        neg = xp.expm1(xp.minimum(x, 0) * input_scale) * (alpha * scale)
        return xp.where(x > 0, x * scale, neg)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        alpha, scale, input_scale = ctx.params
        xp = ctx.xp
        neg = g * xp.exp(xp.minimum(x, 0) * input_scale) * (alpha * scale * input_scale)
        return xp.where(x > 0, g * scale, neg), None, None, None


def elu(input, alpha=1.0, inplace=False):
    """``input`` where positive, ``alpha * (exp(input) - 1)`` elsewhere."""
    return _run(ELU, input, alpha, 1.0, 1.0, inplace=inplace, name="elu_")


def elu_(input, alpha=1.0):
    """In-place :func:`distgrad.nn.functional.elu`."""
    return elu(input, alpha, inplace=True)


def selu(input, inplace=False):
    """Scaled ELU with the self-normalising constants of Klambauer et al."""
    return _run(ELU, input, _SELU_ALPHA, _SELU_SCALE, 1.0, inplace=inplace, name="selu_")


def selu_(input):
    """In-place :func:`distgrad.nn.functional.selu`."""
    return selu(input, inplace=True)


def celu(input, alpha=1.0, inplace=False):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0 (it divides the input)")
    return _run(ELU, input, alpha, 1.0, 1.0 / alpha, inplace=inplace, name="celu_")


def celu_(input, alpha=1.0):
    """In-place :func:`distgrad.nn.functional.celu`."""
    return celu(input, alpha, inplace=True)


_SQRT1_2 = 1 / math.sqrt(2.0)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


class GELU(Op):
    """``x * Phi(x)`` (Phi the standard normal CDF, through erf), or with ``tanh`` its
    approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""

    @staticmethod
    def forward(ctx, x, tanh):
        xp = ctx.xp
        ctx.save_for_backward(x)
        ctx.tanh = tanh
        if tanh:
            return 0.5 * x * (1 + xp.tanh(_SQRT_2_PI * (x + _GELU_C * x * x * x)))
        return 0.5 * x * (1 + erf_array(xp, x * _SQRT1_2))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = ctx.xp
        if ctx.tanh:
            t = xp.tanh(_SQRT_2_PI * (x + _GELU_C * x * x * x))
            dt = (1 - t * t) * (_SQRT_2_PI * (1 + 3 * _GELU_C * x * x))
            return g * (0.5 * (1 + t) + 0.5 * x * dt), None
        cdf = 0.5 * (1 + _erf(xp, x * _SQRT1_2))
        pdf = xp.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return g * (cdf + x * pdf), None


def gelu(input, approximate="none"):
    """Gaussian error linear unit; ``approximate='tanh'`` uses the tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(_floating(input), approximate == "tanh")


class SiLU(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * stable_sigmoid(ctx.xp, x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = stable_sigmoid(ctx.xp, x)
        return g * (s * (1 + x * (1 - s)))


def silu(input, inplace=False):
    """``input * sigmoid(input)`` (swish)."""
    return _run(SiLU, input, inplace=inplace, name="silu_")


class Mish(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * ctx.xp.tanh(stable_softplus(ctx.xp, x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = ctx.xp
        t = xp.tanh(stable_softplus(xp, x))
        return g * (t + x * (1 - t * t) * stable_sigmoid(xp, x))


def mish(input, inplace=False):
    """``input * tanh(softplus(input))``."""
    return _run(Mish, input, inplace=inplace, name="mish_")


class Softplus(Op):
    autocast = "float32"

    @staticmethod
    def forward(ctx, x, beta, threshold):
        ctx.save_for_backward(x)
        ctx.params = (beta, threshold)
        z = x * beta
        return ctx.xp.where(z > threshold, x, stable_softplus(ctx.xp, z) / beta)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        beta, threshold = ctx.params
        z = x * beta
        return ctx.xp.where(z > threshold, g, g * stable_sigmoid(ctx.xp, z)), None, None


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta * x)) / beta``; linear where ``beta * x > threshold``."""
    return Softplus.apply(_floating(input), beta, threshold)


class LogSigmoid(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return -stable_softplus(ctx.xp, -x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * stable_sigmoid(ctx.xp, -x)


def logsigmoid(input):
    """``log(sigmoid(input))``, computed stably."""
    return LogSigmoid.apply(_floating(input))


class Softsign(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x / (1 + ctx.xp.abs(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        d = 1 + ctx.xp.abs(x)
        return g / (d * d)


def softsign(input):
    """``input / (1 + |input|)``."""
    return Softsign.apply(_floating(input))


class Tanhshrink(Op):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x - ctx.xp.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t = ctx.xp.tanh(x)
        return g * (t * t)


def tanhshrink(input):
    """``input - tanh(input)``."""
    return Tanhshrink.apply(_floating(input))


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Randomized leaky ReLU: in training each negative element is scaled by a slope drawn
    uniformly from [lower, upper] (the seeded host stream); in evaluation by their mean."""
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)
    import numpy as np

    from ..backend.random import default_generator
    from .conversion import move_array

    x = _floating(input)
    slopes = default_generator.numpy.uniform(lower, upper, x.shape)
    factor = np.where(np.asarray(x.detach().cpu().array) >= 0, 1.0, slopes)
    factor = as_tensor(move_array(factor.astype(x.array.dtype), x.device))
    if inplace:
        return apply_inplace(input, "rrelu_", lambda s: s * factor)
    return x * factor


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False):
    """In-place ``rrelu``."""
    return rrelu(input, lower, upper, training, inplace=True)


__all__ += ["rrelu", "rrelu_"]
