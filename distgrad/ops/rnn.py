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

from ..autograd import Op, Tensor
from ._helpers import check_same_device

__all__ = ["rnn_sequence", "MODES"]

MODES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _sigmoid_(xp, a):
    """``sigmoid(a)`` in place, as ``(1 + tanh(a / 2)) / 2`` (no overflow, one transcendental)."""
    a *= 0.5
    xp.tanh(a, out=a)
    a += 1
    a *= 0.5
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
        xp = ctx.xp
        hidden = w_hh.shape[1] if mode != "LSTM" else w_ih.shape[0] // 4
        steps = _steps(batch_sizes, reverse)
        gx = x @ w_ih.T  # (rows, G): the input's share of every gate, one GEMM
        if b_ih is not None:
            gx += b_ih
            if mode != "GRU":  # GRU's b_hn sits inside r * (...), so it stays per step
                gx += b_hh
        h = h0.copy()
        h_prev = xp.empty((x.shape[0], h.shape[1]), x.dtype)  # h entering each step
        y = xp.empty((x.shape[0], h.shape[1]), x.dtype)
        c_n = None
        if mode == "LSTM":
            c = c0.copy()
            c_prev = xp.empty((x.shape[0], hidden), x.dtype)
            tanh_c = xp.empty_like(c_prev)
            m = xp.empty_like(c_prev) if w_hr is not None else None
            for off, b in steps:
                rows = slice(off, off + b)
                hb, cb = h[:b], c[:b]
                h_prev[rows] = hb
                c_prev[rows] = cb
                a = gx[rows]
                a += hb @ w_hh.T
                g = a[:, 2 * hidden : 3 * hidden]
                g *= 2  # tanh(x) = 2 sigmoid(2x) - 1: one in-place pass for all four gates
                _sigmoid_(xp, a)
                g *= 2
                g -= 1
                i, f, o = a[:, :hidden], a[:, hidden : 2 * hidden], a[:, 3 * hidden :]
                cb *= f
                cb += i * g
                tc = xp.tanh(cb, out=tanh_c[rows])
                out = o * tc
                if m is not None:
                    m[rows] = out
                    out = out @ w_hr.T
                hb[...] = out
                y[rows] = out
            c_n = c
            ctx.save_for_backward(x, w_ih, w_hh, w_hr, h_prev, c_prev, gx, tanh_c, m)
        elif mode == "GRU":
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
        xp = ctx.xp
        x, w_ih, w_hh, w_hr, h_prev, c_prev, acts, aux, m = ctx.saved_tensors
        mode, hidden = ctx.mode, ctx.hidden
        dh = xp.array(gh_n, copy=True)
        d_gates = xp.empty_like(acts)
        d_gh = None
        d_out = None
        if mode == "LSTM":
            dc = xp.array(gc_n, copy=True)
            tanh_c = aux
            if m is not None:
                d_out = xp.empty_like(h_prev)  # gradient at the projection's output
            for off, b in reversed(ctx.steps):
                rows = slice(off, off + b)
                dhb = dh[:b] + gy[rows]
                if m is not None:
                    d_out[rows] = dhb
                    dhb = dhb @ w_hr
                a = acts[rows]
                i, f, g, o = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
                tc = tanh_c[rows]
                dg = d_gates[rows]
                dcb = dc[:b]
                do = dhb * tc
                dhb *= o
                dhb *= 1 - tc * tc
                dcb += dhb
                dg[:, :hidden] = dcb * g * i * (1 - i)
                dg[:, hidden : 2 * hidden] = dcb * c_prev[rows] * f * (1 - f)
                dg[:, 2 * hidden : 3 * hidden] = dcb * i * (1 - g * g)
                dg[:, 3 * hidden :] = do * o * (1 - o)
                dcb *= f
                dh[:b] = dg @ w_hh
            d_gh = d_gates
            dc0 = dc
        elif mode == "GRU":
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
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mode, tuple(batch_sizes), reverse
    )
    if dense:
        y = y.reshape(steps, batch, y.shape[-1])
    return y, h_n, c_n
