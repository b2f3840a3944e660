"""Recurrent layers as one fused op per layer and direction: ``rnn_sequence``.

The whole sequence runs inside one op: the input-to-gates products of every time step are one
GEMM, each step adds ``h @ w_hh.T`` and applies the gate nonlinearities in place, and the
backward (backpropagation through time) mirrors it, collecting the gate gradients of every step
so that the weight gradients are again single GEMMs. Only the ``dh @ w_hh`` product runs per
step. Gate layouts and formulas are PyTorch's: LSTM ``i, f, g, o``; GRU ``r, z, n`` with
``n = tanh(x_n + r * (h @ w_hn + b_hn))``; Elman RNN ``tanh`` or ``relu``.

Sequences are laid out packed, as ``PackedSequence.data``: the rows of time step ``t`` are the
first ``batch_sizes[t]`` sequences (sorted by decreasing length), so a dense ``(T, N, I)``
input is the special case ``batch_sizes = (N,) * T``. A sequence that has ended keeps its
hidden state (that is its ``h_n``); in the reverse direction a sequence starts from ``h0`` at
its own last step. Differentiable once (its backward is array code).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..autograd import Op, Tensor
from ._helpers import check_same_device

__all__ = ["rnn_sequence", "MODES"]

MODES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _sigmoid_(xp, a):
    """``sigmoid(a)`` in place, as ``1 / (1 + exp(-a))`` (exp overflowing to inf gives 0)."""
    xp.negative(a, out=a)
    with np.errstate(over="ignore") if xp is np else contextlib.nullcontext():
        xp.exp(a, out=a)
    a += 1
    xp.reciprocal(a, out=a)
    return a


def _steps(batch_sizes, reverse):
    """``(row_offset, rows)`` of each time step, in the order the recurrence visits them."""
    offsets, total = [], 0
    for b in batch_sizes:
        offsets.append((total, b))
        total += b
    return offsets[::-1] if reverse else offsets


def _linear(xp, x, w, b):
    out = x @ w.T
    if b is not None:
        out += b
    return out


class RNNSequence(Op):
    """One recurrent layer in one direction over a packed sequence.

    ``forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mode, batch_sizes, reverse)`` returns
    ``(y, h_n, c_n)``: ``y`` of shape ``(rows, P)``, ``h_n`` ``(N, P)`` and, for LSTM, ``c_n``
    ``(N, H)`` (else None). ``c0``, the biases and ``w_hr`` (LSTM projection) may be None."""

    once_differentiable = True

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mode, batch_sizes, reverse):
        """Run the recurrence over every step; see the class docstring."""
        xp = ctx.xp
        hidden = w_hh.shape[1] if mode != "LSTM" else w_ih.shape[0] // 4
        steps = _steps(batch_sizes, reverse)
        ctx.mode, ctx.steps, ctx.hidden = mode, steps, hidden
        ctx.has_bias = b_ih is not None
        if mode == "LSTM":
            return _lstm_forward(ctx, xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, steps)
        gx = x @ w_ih.T  # (rows, G): the input's share of every gate, one GEMM
        if b_ih is not None:
            gx += b_ih
            if mode != "GRU":  # GRU's b_hn sits inside r * (...), so it stays per step
                gx += b_hh
        h = h0.copy()
        h_prev = xp.empty((x.shape[0], h.shape[1]), x.dtype)  # h entering each step
        y = xp.empty((x.shape[0], h.shape[1]), x.dtype)
        c_n = None
        if mode == "GRU":
            h3 = slice(2 * hidden, 3 * hidden)
            gh_n = xp.empty((x.shape[0], hidden), x.dtype)
            for off, b in steps:
                rows = slice(off, off + b)
                hb = h[:b]
                h_prev[rows] = hb
                gh = _linear(xp, hb, w_hh, b_hh)
                a = gx[rows]
                a[:, : 2 * hidden] += gh[:, : 2 * hidden]
                _sigmoid_(xp, a[:, : 2 * hidden])
                r, z = a[:, :hidden], a[:, hidden : 2 * hidden]
                gh_n[rows] = gh[:, h3]
                n = a[:, h3]
                n += r * gh[:, h3]
                xp.tanh(n, out=n)
                hb -= n  # h' = n + z * (h - n)
                hb *= z
                hb += n
                y[rows] = hb
            ctx.save_for_backward(x, w_ih, w_hh, None, h_prev, None, gx, gh_n, None)
        else:
            relu = mode == "RNN_RELU"
            for off, b in steps:
                rows = slice(off, off + b)
                hb = h[:b]
                h_prev[rows] = hb
                a = gx[rows]
                a += hb @ w_hh.T
                if relu:
                    xp.maximum(a, 0, out=a)
                else:
                    xp.tanh(a, out=a)
                hb[...] = a
            y = gx  # the activations are the outputs
            ctx.save_for_backward(x, w_ih, w_hh, None, h_prev, None, y, None, None)
        ctx.mode, ctx.steps, ctx.hidden = mode, steps, hidden
        ctx.has_bias = b_ih is not None
        ctx.shapes = (x.shape, h0.shape)
        return y, h, c_n

    @staticmethod
    def backward(ctx, gy, gh_n, gc_n):
        """Backpropagation through time: gradients of the inputs, states and weights."""
        xp = ctx.xp
        if ctx.mode == "LSTM":
            return _lstm_backward(ctx, xp, gy, gh_n, gc_n)
        x, w_ih, w_hh, w_hr, h_prev, c_prev, acts, aux, m = ctx.saved_tensors
        mode, hidden = ctx.mode, ctx.hidden
        dh = xp.array(gh_n, copy=True)
        d_gates = xp.empty_like(acts)
        d_gh = None
        d_out = None
        if mode == "GRU":
            gh_n_saved = aux
            d_gh = xp.empty_like(acts)
            h3 = slice(2 * hidden, 3 * hidden)
            for off, b in reversed(ctx.steps):
                rows = slice(off, off + b)
                dhb = dh[:b] + gy[rows]
                a = acts[rows]
                r, z, n = a[:, :hidden], a[:, hidden : 2 * hidden], a[:, h3]
                hp = h_prev[rows]
                dg, dgh = d_gates[rows], d_gh[rows]
                dn = dhb * (1 - z)
                dn *= 1 - n * n
                dg[:, h3] = dn
                dgh[:, h3] = dn * r
                dr = dn * gh_n_saved[rows]
                dg[:, :hidden] = dr * r * (1 - r)
                dg[:, hidden : 2 * hidden] = dhb * (hp - n) * z * (1 - z)
                dgh[:, : 2 * hidden] = dg[:, : 2 * hidden]
                dh[:b] = dhb * z + dgh @ w_hh
            dc0 = None
        else:
            relu = mode == "RNN_RELU"
            for off, b in reversed(ctx.steps):
                rows = slice(off, off + b)
                dhb = dh[:b] + gy[rows]
                a = acts[rows]
                dg = d_gates[rows]
                if relu:
                    xp.multiply(dhb, a > 0, out=dg)
                else:
                    xp.multiply(dhb, 1 - a * a, out=dg)
                dh[:b] = dg @ w_hh
            d_gh = d_gates
            dc0 = None
        need = ctx.needs_input_grad
        dx = d_gates @ w_ih if need[0] else None
        dw_ih = d_gates.T @ x if need[3] else None
        dw_hh = d_gh.T @ h_prev if need[4] else None
        db_ih = d_gates.sum(0) if ctx.has_bias and need[5] else None
        db_hh = d_gh.sum(0) if ctx.has_bias and need[6] else None
        dw_hr = d_out.T @ m if d_out is not None and need[7] else None
        return dx, dh, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, None, None, None


def rnn_sequence(
    mode: str,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None = None,
    batch_sizes: tuple | None = None,
    reverse: bool = False,
):
    """Run one recurrent layer (``mode`` in ``MODES``) in one direction.

    ``x`` is ``(T, N, I)`` (then ``batch_sizes`` is None) or packed ``(rows, I)`` with
    ``batch_sizes``; returns ``(y, h_n, c_n)`` with ``y`` in the same layout as ``x``."""
    if mode not in MODES:
        raise ValueError(f"Unrecognized RNN mode: {mode}")
    check_same_device(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    dense = batch_sizes is None
    if dense:
        steps, batch = x.shape[0], x.shape[1]
        batch_sizes = (batch,) * steps
        x = x.reshape(steps * batch, x.shape[2])
    y, h_n, c_n = RNNSequence.apply(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mode, tuple(batch_sizes or ()), reverse
    )
    if dense:
        y = y.reshape(steps, batch, y.shape[-1])
    return y, h_n, c_n


# ---- LSTM ----------------------------------------------------------------------------------
# Internally the gates are ordered o, i, f, g (PyTorch's i, f, g, o permuted), so that the three
# gates scaled by dc (i, f, g) are one contiguous block. The weights are pre-scaled (exactly: by
# powers of two) by -1 for the sigmoid gates and -2 for g, so one pass of exp, +1, reciprocal
# over all four gates gives sigmoid(x) there and sigmoid(2x) for g, and tanh(x) = 2 sigmoid(2x)
# - 1. (numpy's exp is about twice as fast as its tanh.)
def _gate_order(xp, hidden):
    h = hidden
    return xp.concatenate([xp.arange(3 * h, 4 * h), xp.arange(0, 3 * h)])


def _activate_gates(xp, a, hidden):
    """The gates ``(o, i, f, g)`` from the pre-scaled pre-activations ``a`` (rows, 4H), in
    place: ``1 / (1 + exp(a))`` over all four, then g = 2 g - 1 (see ``_gate_order``)."""
    xp.exp(a, out=a)
    a += 1
    xp.reciprocal(a, out=a)
    o, i, f, g = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
    g *= 2
    g -= 1
    return o, i, f, g


def _lstm_forward(ctx, xp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, steps):
    hidden = w_ih.shape[0] // 4
    perm = _gate_order(xp, hidden)
    scale = xp.full((4 * hidden, 1), -1.0, x.dtype)
    scale[3 * hidden :] = -2.0
    w_ih_p, w_hh_p = w_ih[perm], w_hh[perm]
    w_hh_s = (w_hh_p * scale).T.copy()
    gx = x @ (w_ih_p * scale).T  # (rows, 4H): the input's share of every gate, one GEMM
    if b_ih is not None:
        gx += (b_ih + b_hh)[perm] * scale[:, 0]
    rows_total = x.shape[0]
    tanh_c = xp.empty((rows_total, hidden), x.dtype)
    y = xp.empty((rows_total, h0.shape[1]), x.dtype)
    m = xp.empty_like(tanh_c) if w_hr is not None else None
    w_hr_t = None if w_hr is None else w_hr.T.copy()
    quiet = np.errstate(over="ignore") if xp is np else contextlib.nullcontext()
    if len({b for _, b in steps}) == 1:  # every sequence runs every step: no state copies
        c_all = xp.empty_like(tanh_c)
        with quiet:  # exp(-x) overflows to inf for x < -88 (float32): sigmoid is then exactly 0
            _lstm_dense_steps(xp, steps, gx, w_hh_s, w_hr_t, h0, c0, c_all, tanh_c, y, m, hidden)
        first, last = steps[0], steps[-1]
        h = y[last[0] : last[0] + last[1]].copy()
        c = c_all[last[0] : last[0] + last[1]].copy()
        h_prev, c_prev = _shifted(xp, y, h0, first), _shifted(xp, c_all, c0, first)
    else:
        h, c = h0.copy(), c0.copy()
        h_prev = xp.empty((rows_total, h.shape[1]), x.dtype)  # h entering each step
        c_prev = xp.empty((rows_total, hidden), x.dtype)
        with quiet:
            _lstm_steps(xp, steps, gx, w_hh_s, w_hr_t, h, c, h_prev, c_prev, tanh_c, y, m, hidden)
    ctx.save_for_backward(x, w_ih_p, w_hh_p, w_hr, h_prev, c_prev, gx, tanh_c, m)
    ctx.perm = perm
    return y, h, c


def _shifted(xp, states, initial, first):
    """The state entering each step of a dense sequence: ``initial`` at the first step, the
    previous step's output elsewhere (the previous step is the row block before, or after in
    the reverse direction)."""
    n = initial.shape[0]
    if first[0] == 0:
        return xp.concatenate([initial, states[:-n]])
    return xp.concatenate([states[n:], initial])


def _lstm_dense_steps(xp, steps, gx, w_hh_s, w_hr_t, h0, c0, c_all, tanh_c, y, m, hidden):
    h_in, c_in = h0, c0
    for off, b in steps:
        rows = slice(off, off + b)
        a = gx[rows]
        a += h_in @ w_hh_s
        o, i, f, g = _activate_gates(xp, a, hidden)
        c_out = xp.multiply(f, c_in, out=c_all[rows])
        c_out += i * g
        tc = xp.tanh(c_out, out=tanh_c[rows])
        if m is None:
            h_in = xp.multiply(o, tc, out=y[rows])
        else:
            h_in = xp.matmul(xp.multiply(o, tc, out=m[rows]), w_hr_t, out=y[rows])
        c_in = c_out


def _lstm_steps(xp, steps, gx, w_hh_s, w_hr_t, h, c, h_prev, c_prev, tanh_c, y, m, hidden):
    for off, b in steps:
        rows = slice(off, off + b)
        hb, cb = h[:b], c[:b]
        h_prev[rows] = hb
        c_prev[rows] = cb
        a = gx[rows]
        a += hb @ w_hh_s
        o, i, f, g = _activate_gates(xp, a, hidden)
        cb *= f
        cb += i * g
        tc = xp.tanh(cb, out=tanh_c[rows])
        if m is None:
            out = xp.multiply(o, tc, out=y[rows])
            hb[...] = out
        else:
            mr = xp.multiply(o, tc, out=m[rows])
            xp.matmul(mr, w_hr_t, out=hb)
            y[rows] = hb


def _lstm_backward(ctx, xp, gy, gh_n, gc_n):
    x, w_ih_p, w_hh_p, w_hr, h_prev, c_prev, acts, tanh_c, m = ctx.saved_tensors
    hidden = ctx.hidden
    o, i, f, g = (acts[:, k * hidden : (k + 1) * hidden] for k in range(4))
    # every factor that does not depend on the incoming gradients, for all steps at once
    factors = xp.empty_like(acts)
    xp.multiply(tanh_c, o * (1 - o), out=factors[:, :hidden])  # dG_o = dh * this
    xp.multiply(g, i * (1 - i), out=factors[:, hidden : 2 * hidden])  # dG_i = dc * this
    xp.multiply(c_prev, f * (1 - f), out=factors[:, 2 * hidden : 3 * hidden])  # dG_f
    xp.multiply(i, 1 - g * g, out=factors[:, 3 * hidden :])  # dG_g = dc * this
    to_c = o * (1 - tanh_c * tanh_c)  # dc += dh * this
    dh = xp.array(gh_n, copy=True)
    dc = xp.array(gc_n, copy=True)
    d_gates = xp.empty_like(acts)
    d_out = xp.empty_like(h_prev) if m is not None else None
    d_gates3 = d_gates.reshape(-1, 4, hidden)  # views: (rows, gate, H)
    factors3 = factors.reshape(-1, 4, hidden)
    for off, b in reversed(ctx.steps):
        rows = slice(off, off + b)
        dhb = dh[:b] + gy[rows]
        if m is not None:
            d_out[rows] = dhb
            dhb = dhb @ w_hr
        dcb = dc[:b]
        dcb += dhb * to_c[rows]
        dg, fr = d_gates[rows], factors[rows]
        xp.multiply(dhb, fr[:, :hidden], out=dg[:, :hidden])
        xp.multiply(dcb[:, None, :], factors3[rows, 1:], out=d_gates3[rows, 1:])
        dcb *= f[rows]
        xp.matmul(dg, w_hh_p, out=dh[:b])
    need = ctx.needs_input_grad
    inverse = xp.argsort(ctx.perm)
    dx = d_gates @ w_ih_p if need[0] else None
    dw_ih = (d_gates.T @ x)[inverse] if need[3] else None
    dw_hh = (d_gates.T @ h_prev)[inverse] if need[4] else None
    db = d_gates.sum(0)[inverse] if ctx.has_bias and (need[5] or need[6]) else None
    dw_hr = d_out.T @ m if d_out is not None and need[7] else None
    return (
        dx,
        dh,
        dc,
        dw_ih,
        dw_hh,
        db if need[5] else None,
        db if need[6] else None,
        dw_hr,
        None,
        None,
        None,
    )
