"""The fused recurrent op ``rnn_sequence`` in the op harness: forward against a step-by-step
numpy reference, gradients against central differences (it is once differentiable)."""

import numpy as np

from distgrad.ops.rnn import rnn_sequence
from tests.ops.harness import Float, OpCase, make_tests

T, N, I, H, P = 4, 3, 5, 6, 4


def _sig(a):
    return 1 / (1 + np.exp(-a))


def _ref(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=None, batch_sizes=None, reverse=False):
    """Step by step, as PyTorch documents the formulas; packed rows when ``batch_sizes``."""
    if batch_sizes is None:
        batch_sizes = (x.shape[1],) * x.shape[0]
        x = x.reshape(-1, x.shape[-1])
        dense = True
    else:
        dense = False
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    order = range(len(batch_sizes))[::-1] if reverse else range(len(batch_sizes))
    h, c = h.copy(), None if c is None else c.copy()
    ys = np.zeros((x.shape[0], h.shape[1]))
    b_ih = 0 if b_ih is None else b_ih
    b_hh = 0 if b_hh is None else b_hh
    for t in order:
        b = batch_sizes[t]
        xt = x[offsets[t] : offsets[t] + b]
        hp = h[:b]
        gi, gh = xt @ w_ih.T + b_ih, hp @ w_hh.T + b_hh
        if mode == "LSTM":
            i, f, g, o = np.split(gi + gh, 4, axis=1)
            cn = _sig(f) * c[:b] + _sig(i) * np.tanh(g)
            hn = _sig(o) * np.tanh(cn)
            if w_hr is not None:
                hn = hn @ w_hr.T
            c[:b] = cn
        elif mode == "GRU":
            xr, xz, xn = np.split(gi, 3, axis=1)
            hr, hz, hn_ = np.split(gh, 3, axis=1)
            r, z = _sig(xr + hr), _sig(xz + hz)
            n = np.tanh(xn + r * hn_)
            hn = (1 - z) * n + z * hp
        elif mode == "RNN_TANH":
            hn = np.tanh(gi + gh)
        else:
            hn = np.maximum(gi + gh, 0)
        h[:b] = hn
        ys[offsets[t] : offsets[t] + b] = hn
    if dense:
        ys = ys.reshape(len(batch_sizes), -1, h.shape[1])
    return (ys, h) if c is None else (ys, h, c)


def _case(name, mode, gates, proj=False, bias=True, packed=None, reverse=False):
    out = P if proj else H
    shapes = [
        Float(((sum(packed), I) if packed else (T, N, I)), -1, 1),
        Float((N, out), -1, 1),
        Float((N, H), -1, 1) if mode == "LSTM" else None,
        Float((gates * H, I), -0.5, 0.5),
        Float((gates * H, out), -0.5, 0.5),
        Float((gates * H,), -0.5, 0.5) if bias else None,
        Float((gates * H,), -0.5, 0.5) if bias else None,
        Float((P, H), -0.5, 0.5) if proj else None,
    ]

    def fn(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
        y, h_n, c_n = rnn_sequence(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, packed, reverse)
        return (y, h_n) if c_n is None else (y, h_n, c_n)

    def ref(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
        return _ref(mode, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, packed, reverse)

    return OpCase(name, fn, ref, tuple(shapes), double=False, atol=1e-6)


PACKED = (3, 3, 2, 1)  # three sequences of lengths 4, 3, 2
CASES = [
    _case("lstm", "LSTM", 4),
    _case("lstm_reverse", "LSTM", 4, reverse=True),
    _case("lstm_proj", "LSTM", 4, proj=True),
    _case("lstm_packed", "LSTM", 4, packed=PACKED),
    _case("lstm_packed_reverse_nobias", "LSTM", 4, packed=PACKED, reverse=True, bias=False),
    _case("gru", "GRU", 3),
    _case("gru_packed_reverse", "GRU", 3, packed=PACKED, reverse=True),
    _case("rnn_tanh", "RNN_TANH", 1),
    _case("rnn_relu_packed", "RNN_RELU", 1, packed=PACKED),
]

globals().update(make_tests(CASES))
