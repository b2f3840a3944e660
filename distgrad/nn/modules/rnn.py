"""Recurrent layers ``RNN``, ``LSTM``, ``GRU`` and the cells ``RNNCell``, ``LSTMCell``,
``GRUCell``, with PyTorch's parameter names, shapes, initialisation and call signatures (a
torch ``state_dict`` loads unchanged). Each layer and direction runs as one fused op
(``ops.rnn.rnn_sequence``); a cell is that op over one time step."""

from __future__ import annotations

import math
import numbers
import warnings

from ... import ops
from ...ops.rnn import rnn_sequence
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ..utils.rnn import PackedSequence

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_sizes(input_size, hidden_size, num_layers=1) -> None:
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    if not isinstance(hidden_size, int) or isinstance(hidden_size, bool):
        raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")


def _check_dtype(input, weight) -> None:
    if input.dtype != weight.dtype:
        raise ValueError(
            f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
        )


class RNNBase(Module):
    """The shared machinery of ``RNN``, ``LSTM`` and ``GRU`` (``mode`` is ``"RNN_TANH"``,
    ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``)."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + str(mode))
        if (
            not isinstance(dropout, numbers.Number)
            or isinstance(dropout, bool)
            or not 0 <= dropout <= 1
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of "
                "an element being zeroed"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(
                f"batch_first should be of type bool, got: {type(batch_first).__name__}"
            )
        _check_sizes(input_size, hidden_size, num_layers)
        if proj_size < 0:
            raise ValueError(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, proj_size
        directions = 2 if bidirectional else 1
        gates = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        kw = dict(device=device, dtype=dtype)
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(directions):
                suffix = "_reverse" if direction else ""
                layer_input = input_size if layer == 0 else real_hidden * directions
                shapes: list[tuple[str, tuple[int, ...]]] = [
                    (f"weight_ih_l{layer}{suffix}", (gates, layer_input)),
                    (f"weight_hh_l{layer}{suffix}", (gates, real_hidden)),
                ]
                if bias:
                    shapes += [
                        (f"bias_ih_l{layer}{suffix}", (gates,)),
                        (f"bias_hh_l{layer}{suffix}", (gates,)),
                    ]
                if proj_size:
                    shapes.append((f"weight_hr_l{layer}{suffix}", (proj_size, hidden_size)))
                for name, shape in shapes:
                    setattr(self, name, Parameter(ops.empty(*shape, **kw)))
                names = [name for name, _ in shapes]
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias uniform in ``±1/sqrt(hidden_size)`` (PyTorch's init)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """Nothing to do: kept for PyTorch compatibility (cuDNN's weight layout)."""

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list:
        """The parameters of each layer and direction, in PyTorch's order."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        """The constructor arguments shown by ``repr``."""
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # ---- validation ---------------------------------------------------------------------------
    def _name(self) -> str:
        return "RNN" if self.mode.startswith("RNN") else self.mode

    def _hidden_shapes(self, batch: int) -> tuple:
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return (layers, batch, self.proj_size or self.hidden_size), (
            layers,
            batch,
            self.hidden_size,
        )

    def _check_input(self, input, packed: bool) -> None:
        _check_dtype(input, self.weight_ih_l0)
        expected = 2 if packed else 3
        if input.ndim != expected:
            raise RuntimeError(f"input must have {expected} dimensions, got {input.ndim}")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.shape[-1]}"
            )

    def _check_hidden(self, hx, expected, msg="Expected hidden size {}, got {}") -> None:
        if tuple(hx.shape) != expected:
            raise RuntimeError(msg.format(expected, list(hx.shape)))
        if hx.dtype != self.weight_ih_l0.dtype:
            raise RuntimeError(
                f"Expected the hidden state's dtype to be the weights' {self.weight_ih_l0.dtype}, "
                f"got {hx.dtype}"
            )

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, input, hx=None):
        """``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) as PyTorch's; ``input`` is
        ``(T, N, I)`` (``(N, T, I)`` if ``batch_first``), unbatched ``(T, I)``, or a
        ``PackedSequence`` (then ``output`` is one too)."""
        lstm = self.mode == "LSTM"
        name = self._name()
        packed = isinstance(input, PackedSequence)
        batched = True
        if packed:
            data, sizes, sorted_indices, unsorted_indices = input
            batch_sizes = tuple(int(b) for b in sizes.array)
            batch = batch_sizes[0]
            self._check_input(data, True)
            x = data
        else:
            if input.ndim not in (2, 3):
                tail = " tensor" if name == "RNN" else ""
                raise ValueError(
                    f"{name}: Expected input to be 2D or 3D, got {input.ndim}D{tail} instead"
                )
            batched = input.ndim == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
            batch_sizes, sorted_indices, unsorted_indices = None, None, None
            self._check_input(x, False)
            batch = x.shape[1]
        h_shape, c_shape = self._hidden_shapes(batch)
        if hx is None:
            h0 = ops.zeros(*h_shape, dtype=x.dtype, device=x.device)
            c0 = ops.zeros(*c_shape, dtype=x.dtype, device=x.device) if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)
            if not packed:
                want = 3 if batched else 2
                dims = (h0.ndim, c0.ndim) if lstm else (h0.ndim,)
                if any(d != want for d in dims):
                    kind = "batched 3-D" if batched else "unbatched 2-D"
                    if lstm:
                        raise RuntimeError(
                            f"For {kind} input, hx and cx should also be {want}-D but got "
                            f"({dims[0]}-D, {dims[1]}-D) tensors"
                        )
                    raise RuntimeError(
                        f"For {kind} input, hx should also be {want}-D but got {dims[0]}-D tensor"
                    )
                if not batched:
                    h0 = h0.unsqueeze(1)
                    c0 = c0.unsqueeze(1) if lstm else None
            if lstm:
                self._check_hidden(h0, h_shape, "Expected hidden[0] size {}, got {}")
                self._check_hidden(c0, c_shape, "Expected hidden[1] size {}, got {}")
            else:
                self._check_hidden(h0, h_shape)
            if sorted_indices is not None:
                h0 = h0.index_select(1, sorted_indices)
                c0 = c0.index_select(1, sorted_indices) if lstm else None
        out, h_n, c_n = self._run(x, h0, c0, batch_sizes)
        if packed:
            if unsorted_indices is not None:
                h_n = h_n.index_select(1, unsorted_indices)
                c_n = c_n.index_select(1, unsorted_indices) if lstm else None
            output = PackedSequence(out, sizes, sorted_indices, unsorted_indices)
        else:
            output = out
            if not batched:
                output = output.squeeze(1)
                h_n = h_n.squeeze(1)
                c_n = c_n.squeeze(1) if lstm else None
            elif self.batch_first:
                output = output.transpose(0, 1)
        return output, ((h_n, c_n) if lstm else h_n)

    def _run(self, x, h0, c0, batch_sizes):
        directions = 2 if self.bidirectional else 1
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(directions):
                k = layer * directions + d
                w = [getattr(self, n) for n in self._all_weights[k]]
                w_ih, w_hh = w[0], w[1]
                b_ih, b_hh = (w[2], w[3]) if self.bias else (None, None)
                w_hr = w[-1] if self.proj_size else None
                y, h, c = rnn_sequence(
                    self.mode,
                    x,
                    h0[k],
                    None if c0 is None else c0[k],
                    w_ih,
                    w_hh,
                    b_ih,
                    b_hh,
                    w_hr,
                    batch_sizes,
                    reverse=bool(d),
                )
                outs.append(y)
                hs.append(h)
                cs.append(c)
            x = outs[0] if directions == 1 else ops.cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        h_n = ops.stack(hs)
        c_n = ops.stack(cs) if c0 is not None else None
        return x, h_n, c_n


class RNN(RNNBase):
    """Elman RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or ``relu`` with
    ``nonlinearity="relu"``), as ``torch.nn.RNN``."""

    def __init__(self, *args, nonlinearity: str = "tanh", **kwargs):
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", *args, **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory (gates ``i, f, g, o``; optional projection ``proj_size``), as
    ``torch.nn.LSTM``; ``forward(input, (h_0, c_0))`` returns ``(output, (h_n, c_n))``."""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit (gates ``r, z, n``), as ``torch.nn.GRU``."""

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)


class RNNCellBase(Module):
    """The shared parameters of the cells: ``weight_ih`` ``(chunks*H, I)``, ``weight_hh``
    ``(chunks*H, H)``, ``bias_ih``, ``bias_hh``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        kw = dict(device=device, dtype=dtype)
        self.weight_ih = Parameter(ops.empty(num_chunks * hidden_size, input_size, **kw))
        self.weight_hh = Parameter(ops.empty(num_chunks * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = Parameter(ops.empty(num_chunks * hidden_size, **kw))
            self.bias_hh = Parameter(ops.empty(num_chunks * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias uniform in ``±1/sqrt(hidden_size)``."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        """The constructor arguments shown by ``repr``."""
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _prepare(self, name: str, input, states):
        """Validate; return ``(x (1, N, I), states as (N, H) each, batched)``."""
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        _check_dtype(input, self.weight_ih)
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        if x.shape[1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {x.shape[1]} expected {self.input_size}"
            )
        out = []
        for i, s in enumerate(states):
            label = "hidden" if len(states) == 1 else f"hx[{i}]"
            if s is None:
                s = ops.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            else:
                if s.ndim not in (1, 2):
                    raise ValueError(
                        f"{name}: Expected {label} to be 1D or 2D, got {s.ndim}D instead"
                    )
                if s.ndim != input.ndim:
                    raise RuntimeError(
                        f"{name}: {label} must be {input.ndim}D like the input, got "
                        f"{s.ndim}D of shape {list(s.shape)}"
                    )
                s = s if batched else s.unsqueeze(0)
                if s.shape[0] != x.shape[0]:
                    raise RuntimeError(
                        f"Input batch size {x.shape[0]} doesn't match hidden{i} batch size "
                        f"{s.shape[0]}"
                    )
                if s.shape[1] != self.hidden_size:
                    raise RuntimeError(
                        f"hidden{i} has inconsistent hidden_size: got {s.shape[1]}, expected "
                        f"{self.hidden_size}"
                    )
                if s.dtype != x.dtype:
                    raise RuntimeError(
                        f"{name}: expected {label} of dtype {x.dtype} like the input, got {s.dtype}"
                    )
            out.append(s)
        return x.unsqueeze(0), out, batched

    def _step(self, mode, x, h, c):
        _, h, c = rnn_sequence(
            mode, x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        )
        return h, c


class RNNCell(RNNCellBase):
    """One Elman RNN step: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or ``relu``)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        """``h'`` of shape ``(N, H)`` (``(H,)`` for an unbatched input)."""
        x, (h,), batched = self._prepare("RNNCell", input, [hx])
        h, _ = self._step("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", x, h, None)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step; ``forward(input, (h, c))`` returns ``(h', c')``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        """``(h', c')``, each ``(N, H)`` (``(H,)`` for an unbatched input)."""
        states = [None, None] if hx is None else list(hx)
        x, (h, c), batched = self._prepare("LSTMCell", input, states)
        h, c = self._step("LSTM", x, h, c)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step; ``forward(input, h)`` returns ``h'``."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        """``h'`` of shape ``(N, H)`` (``(H,)`` for an unbatched input)."""
        x, (h,), batched = self._prepare("GRUCell", input, [hx])
        h, _ = self._step("GRU", x, h, None)
        return h if batched else h.squeeze(0)
