"""RNN, LSTM, GRU, the cells and ``nn.utils.rnn`` against PyTorch (float64, same weights
loaded from a torch ``state_dict``), plus their errors, which must leave no state changed."""

import numpy as np
import pytest

import distgrad as dg
from distgrad import nn
from distgrad.nn.utils import rnn as rnn_utils

torch = pytest.importorskip("torch")

from tests.nn.torch_parity import (  # noqa: E402
    assert_close,
    assert_grads_match,
    backward_both,
    both,
    flat,
    load_torch_state,
)

CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(batch_first=True, num_layers=3),
    dict(bias=False, bidirectional=True),
]


def _pair(name, *args, **kwargs):
    theirs = getattr(torch.nn, name)(*args, **kwargs).double()
    ours = getattr(nn, name)(*args, **kwargs).double()
    load_torch_state(ours, theirs)
    return ours, theirs


def _check(ours, theirs, inputs, seed=0):
    """Forward and backward through both; outputs, parameter and input gradients agree."""
    pairs = [both(a, torch) if a is not None else (None, None) for a in inputs]
    args_dg = [p[0] for p in pairs]
    args_t = [p[1] for p in pairs]
    out_dg = ours(*_group(ours, args_dg))
    out_t = theirs(*_group(theirs, args_t))
    for i, (a, b) in enumerate(zip(flat(out_dg), flat(out_t))):
        assert_close(a, b, what=f"output {i}")
    backward_both(flat(out_dg), flat(out_t), torch, seed)
    assert_grads_match(
        ours, theirs, [a for a in args_dg if a is not None], [b for b in args_t if b is not None]
    )
    return out_dg, out_t


def _group(module, args):
    """``(x, h0, c0)`` as the module's call wants it: LSTMs take ``(h0, c0)`` as one tuple."""
    x, *states = args
    states = [s for s in states if s is not None]
    if not states:
        return (x,)
    if type(module).__name__ in ("LSTM", "LSTMCell"):
        return (x, tuple(states))
    return (x, states[0])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
def test_layer_matches_torch(name, config):
    ours, theirs = _pair(name, 5, 7, **config)
    rng = np.random.default_rng(1)
    _check(ours, theirs, [rng.standard_normal((4, 3, 5))])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_initial_states_match_torch(name):
    ours, theirs = _pair(name, 4, 6, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 2, 4))
    h0 = rng.standard_normal((4, 2, 6))
    c0 = rng.standard_normal((4, 2, 6)) if name == "LSTM" else None
    _check(ours, theirs, [x, h0, c0])


def test_lstm_projection_and_relu_rnn_match_torch():
    rng = np.random.default_rng(3)
    ours, theirs = _pair("LSTM", 4, 6, num_layers=2, bidirectional=True, proj_size=3)
    x = rng.standard_normal((5, 2, 4))
    _check(ours, theirs, [x, rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 6))])
    ours, theirs = _pair("RNN", 4, 6, num_layers=2, nonlinearity="relu")
    _check(ours, theirs, [x])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_unbatched_input_matches_torch(name):
    ours, theirs = _pair(name, 3, 4, num_layers=2)
    rng = np.random.default_rng(4)
    h0 = rng.standard_normal((2, 4))
    _check(ours, theirs, [rng.standard_normal((6, 3)), h0, h0 * 0.5 if name == "LSTM" else None])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequence_matches_torch(name, bidirectional):
    ours, theirs = _pair(name, 3, 5, num_layers=2, bidirectional=bidirectional)
    rng = np.random.default_rng(5)
    lengths = [2, 5, 3, 5]  # unsorted: exercises sorted/unsorted indices
    padded = rng.standard_normal((4, 5, 3))
    x_dg, x_t = both(padded, torch)
    p_dg = rnn_utils.pack_padded_sequence(x_dg, lengths, batch_first=True, enforce_sorted=False)
    p_t = torch.nn.utils.rnn.pack_padded_sequence(
        x_t, lengths, batch_first=True, enforce_sorted=False
    )
    assert_close(p_dg.data, p_t.data, what="packed data")
    assert list(p_dg.batch_sizes.numpy()) == p_t.batch_sizes.tolist()
    layers = 4 if bidirectional else 2
    h0 = rng.standard_normal((layers, 4, 5))
    hx_dg, hx_t = both(h0, torch)
    if name == "LSTM":
        c_dg, c_t = both(h0 * 0.3, torch)
        hx_dg, hx_t = (hx_dg, c_dg), (hx_t, c_t)
    out_dg, h_dg = ours(p_dg, hx_dg)
    out_t, h_t = theirs(p_t, hx_t)
    assert isinstance(out_dg, rnn_utils.PackedSequence)
    pad_dg, len_dg = rnn_utils.pad_packed_sequence(out_dg, batch_first=True, total_length=6)
    pad_t, len_t = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=True, total_length=6)
    assert_close(pad_dg, pad_t, what="padded output")
    assert list(len_dg.numpy()) == len_t.tolist() == lengths
    for a, b in zip(flat(h_dg), flat(h_t)):
        assert_close(a, b, what="final state")
    backward_both([pad_dg, *flat(h_dg)], [pad_t, *flat(h_t)], torch)
    assert_grads_match(ours, theirs, [x_dg], [x_t])


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(name, batched):
    kwargs = dict(nonlinearity="relu") if name == "RNNCell" and not batched else {}
    ours, theirs = _pair(name, 4, 5, **kwargs)
    rng = np.random.default_rng(6)
    lead = (3,) if batched else ()
    h = rng.standard_normal(lead + (5,))
    c = rng.standard_normal(lead + (5,)) if name == "LSTMCell" else None
    _check(ours, theirs, [rng.standard_normal(lead + (4,)), h, c])
    _check(ours, theirs, [rng.standard_normal(lead + (4,))], seed=1)  # zero initial state


def test_cell_loop_matches_torch():
    """A cell unrolled in a Python loop (the time-series tutorial's pattern)."""
    ours, theirs = _pair("LSTMCell", 2, 8)
    rng = np.random.default_rng(7)
    x_dg, x_t = both(rng.standard_normal((5, 3, 2)), torch)
    state_dg = state_t = None
    outs_dg, outs_t = [], []
    for t in range(5):
        state_dg = ours(x_dg[t], state_dg)
        state_t = theirs(x_t[t], state_t)
        outs_dg.append(state_dg[0])
        outs_t.append(state_t[0])
    backward_both(outs_dg, outs_t, torch)
    assert_grads_match(ours, theirs, [x_dg], [x_t])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_state_dict_keys_and_init_as_torch(name):
    args = (3, 4) if "Cell" in name else (3, 4, 2)
    kwargs = {} if "Cell" in name else dict(bidirectional=True)
    ours = getattr(nn, name)(*args, **kwargs)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    sd_t = theirs.state_dict()
    assert list(ours.state_dict()) == list(sd_t)
    for k, v in ours.state_dict().items():
        assert tuple(v.shape) == tuple(sd_t[k].shape), k
        assert np.abs(v.detach().numpy()).max() <= 0.5 + 1e-7  # uniform(+-1/sqrt(4))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def test_lstm_projection_parameter_names():
    ours = nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True)
    theirs = torch.nn.LSTM(3, 6, num_layers=2, proj_size=2, bidirectional=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "weight_hr_l1_reverse" in ours.state_dict()


def test_module_paths():
    assert nn.modules.rnn.LSTM is nn.LSTM
    assert nn.utils.rnn.PackedSequence is rnn_utils.PackedSequence


def test_dropout_between_layers():
    ours = nn.LSTM(3, 4, num_layers=3, dropout=0.5)
    x = dg.randn(6, 2, 3)
    ours.eval()
    a, b = ours(x)[0].detach(), ours(x)[0].detach()
    assert np.array_equal(a.numpy(), b.numpy())
    ours.train()
    dg.manual_seed(0)
    c = ours(x)[0].detach()
    dg.manual_seed(1)
    d = ours(x)[0].detach()
    assert not np.allclose(c.numpy(), d.numpy())
    assert not np.allclose(c.numpy(), a.numpy())
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.2)


def test_float32_stays_float32():
    ours = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    x = dg.randn(5, 2, 3, requires_grad=True)
    out, h = ours(x)
    assert out.dtype == dg.float32 and h.dtype == dg.float32
    out.sum().backward()
    assert x.grad.dtype == dg.float32
    assert all(p.grad.dtype == dg.float32 for p in ours.parameters())


# ---- nn.utils.rnn -------------------------------------------------------------------------
def test_pad_sequence_matches_torch():
    rng = np.random.default_rng(8)
    seqs = [rng.standard_normal((n, 2)) for n in (3, 1, 4)]
    pairs = [both(s, torch) for s in seqs]
    for kwargs in (dict(), dict(batch_first=True, padding_value=-1.0), dict(padding_side="left")):
        a = rnn_utils.pad_sequence([p[0] for p in pairs], **kwargs)
        b = torch.nn.utils.rnn.pad_sequence([p[1] for p in pairs], **kwargs)
        assert_close(a, b, what=str(kwargs))
    backward_both([a], [b], torch)
    for p in pairs:
        assert_close(p[0].grad, p[1].grad)


def test_pack_sequence_roundtrip_matches_torch():
    rng = np.random.default_rng(9)
    seqs = [rng.standard_normal((n, 3)) for n in (2, 4, 1)]
    ours = rnn_utils.pack_sequence([dg.tensor(s) for s in seqs], enforce_sorted=False)
    theirs = torch.nn.utils.rnn.pack_sequence([torch.tensor(s) for s in seqs], enforce_sorted=False)
    assert_close(ours.data, theirs.data)
    assert list(ours.sorted_indices.numpy()) == theirs.sorted_indices.tolist()
    assert list(ours.unsorted_indices.numpy()) == theirs.unsorted_indices.tolist()
    back = rnn_utils.unpack_sequence(ours)
    for got, want in zip(back, seqs):
        np.testing.assert_array_equal(got.numpy(), want)
    lengths = dg.tensor([2, 4, 1])
    padded = rnn_utils.pad_sequence([dg.tensor(s) for s in seqs])
    for got, want in zip(rnn_utils.unpad_sequence(padded, lengths), seqs):
        np.testing.assert_array_equal(got.numpy(), want)


def test_pack_errors():
    x = dg.randn(4, 2, 3)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        rnn_utils.pack_padded_sequence(x, [2, 4])
    with pytest.raises(RuntimeError, match="greater than 0"):
        rnn_utils.pack_padded_sequence(x, [2, 0])
    with pytest.raises(RuntimeError, match="batch_size"):
        rnn_utils.pack_padded_sequence(x, [2, 2, 1])
    packed = rnn_utils.pack_padded_sequence(x, [4, 2])
    with pytest.raises(ValueError, match="total_length=3 and max sequence length being 4"):
        rnn_utils.pad_packed_sequence(packed, total_length=3)


# ---- bad input: torch-style errors, nothing changed ------------------------------------------
def _snapshot(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _unchanged(module, before):
    after = _snapshot(module)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda m: m(dg.randn(5, 2, 7)), RuntimeError, "Expected 3, got 7"),
        (lambda m: m(dg.randn(1, 5, 2, 3)), ValueError, "Expected input to be 2D or 3D, got 4D"),
        (
            lambda m: m(dg.randn(5, 2, 3), (dg.zeros(2, 3, 4), dg.zeros(2, 2, 4))),
            RuntimeError,
            r"Expected hidden\[0\] size \(2, 2, 4\), got \[2, 3, 4\]",
        ),
        (
            lambda m: m(dg.randn(5, 2, 3), (dg.zeros(2, 2, 4), dg.zeros(1, 2, 4))),
            RuntimeError,
            r"Expected hidden\[1\] size \(2, 2, 4\), got \[1, 2, 4\]",
        ),
        (
            lambda m: m(dg.randn(5, 2, 3), (dg.zeros(2, 4), dg.zeros(2, 4))),
            RuntimeError,
            "hx and cx should also be 3-D",
        ),
        (
            lambda m: m(dg.randn(5, 2, 3, dtype=dg.float64)),
            ValueError,
            "does not match weight dtype",
        ),
    ],
)
def test_lstm_bad_input(call, error, match):
    m = nn.LSTM(3, 4, num_layers=2)
    before = _snapshot(m)
    with pytest.raises(error, match=match):
        call(m)
    _unchanged(m, before)


def test_gru_and_cell_bad_input():
    m = nn.GRU(3, 4)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\), got \[1, 2, 5\]"):
        m(dg.randn(5, 2, 3), dg.zeros(1, 2, 5))
    with pytest.raises(RuntimeError, match="For batched 3-D input, hx should also be 3-D"):
        m(dg.randn(5, 2, 3), dg.zeros(2, 4))
    cell = nn.LSTMCell(3, 4)
    before = _snapshot(cell)
    with pytest.raises(RuntimeError, match="input has inconsistent input_size: got 5 expected 3"):
        cell(dg.randn(2, 5))
    with pytest.raises(
        RuntimeError, match="hidden0 has inconsistent hidden_size: got 3, expected 4"
    ):
        cell(dg.randn(2, 3), (dg.zeros(2, 3), dg.zeros(2, 4)))
    with pytest.raises(RuntimeError, match="Input batch size 2 doesn't match hidden1 batch size 3"):
        cell(dg.randn(2, 3), (dg.zeros(2, 4), dg.zeros(3, 4)))
    with pytest.raises(ValueError, match="LSTMCell: Expected input to be 1D or 2D, got 3D"):
        cell(dg.randn(1, 2, 3))
    _unchanged(cell, before)


def test_constructor_errors_as_torch():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, dropout=1.5)
    with pytest.raises(TypeError, match="hidden_size should be of type int"):
        nn.GRU(3, 4.0)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
