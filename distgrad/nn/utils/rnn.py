"""``nn.utils.rnn``: packed and padded sequences, as ``torch.nn.utils.rnn``.

A ``PackedSequence`` holds the time steps of a batch of variable-length sequences back to back
(``data``: the first ``batch_sizes[0]`` rows are every sequence's first element, ...), the
sequences sorted by decreasing length; ``sorted_indices`` / ``unsorted_indices`` map between
that order and the caller's. Packing and padding are one differentiable gather each.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ... import ops
from ...autograd import Tensor

__all__ = [
    "PackedSequence",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpad_sequence",
    "pack_sequence",
    "unpack_sequence",
    "invert_permutation",
]


class PackedSequence(NamedTuple):
    """``(data, batch_sizes, sorted_indices, unsorted_indices)``; build it with
    ``pack_padded_sequence`` or ``pack_sequence``, not directly."""

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None

    def to(self, *args, **kwargs) -> PackedSequence:
        """The same sequence with ``data`` moved/cast by ``Tensor.to`` (indices stay)."""
        data = self.data.to(*args, **kwargs)
        return self if data is self.data else self._replace(data=data)

    def cpu(self) -> PackedSequence:
        """``data`` on the CPU."""
        return self.to("cpu")

    def cuda(self, *args, **kwargs) -> PackedSequence:
        """``data`` on a GPU."""
        return self._replace(data=self.data.cuda(*args, **kwargs))

    def double(self) -> PackedSequence:
        """``data`` as float64."""
        return self._replace(data=self.data.double())

    def float(self) -> PackedSequence:
        """``data`` as float32."""
        return self._replace(data=self.data.float())

    @property
    def is_cuda(self) -> bool:
        """Whether ``data`` is on a GPU."""
        return self.data.is_cuda


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The inverse of a permutation of ``0..n-1`` (None for None)."""
    if permutation is None:
        return None
    p = np.asarray(permutation.array if isinstance(permutation, Tensor) else permutation)
    inverse = np.empty_like(p)
    inverse[p] = np.arange(p.size, dtype=p.dtype)
    return Tensor(inverse.astype(np.int64))


def _lengths(lengths) -> np.ndarray:
    if isinstance(lengths, Tensor):
        if lengths.ndim != 1 or lengths.is_floating_point():
            raise RuntimeError(
                f"'lengths' argument should be a 1D CPU int64 tensor, but got "
                f"{lengths.ndim}D {str(lengths.device)} {lengths.dtype} tensor"
            )
        return np.asarray(lengths.cpu().array).astype(np.int64)
    return np.asarray(list(lengths), dtype=np.int64)


def _batch_sizes(sorted_lengths: np.ndarray) -> np.ndarray:
    """``batch_sizes[t]`` = how many sequences are longer than ``t``."""
    steps = np.arange(int(sorted_lengths[0]))
    return (sorted_lengths[None, :] > steps[:, None]).sum(1).astype(np.int64)


def pack_padded_sequence(
    input: Tensor, lengths, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Pack a padded ``(T, B, *)`` (``(B, T, *)`` if ``batch_first``) batch of sequences of
    the given ``lengths``. With ``enforce_sorted`` the lengths must be in decreasing order;
    otherwise the batch is sorted here and the permutation kept."""
    lens = _lengths(lengths)
    batch_dim = 0 if batch_first else 1
    if input.ndim < 2:
        raise ValueError(
            f"pack_padded_sequence: expected input of at least 2 dimensions (T, B, *), "
            f"got shape {list(input.shape)}"
        )
    if lens.ndim != 1 or lens.size != input.shape[batch_dim]:
        raise RuntimeError(
            f"Expected `len(lengths)` to be equal to batch_size, but got {lens.size} "
            f"(batch_size={input.shape[batch_dim]})"
        )
    if lens.size and lens.min() <= 0:
        raise RuntimeError(
            "Length of all samples has to be greater than 0, but found an element in "
            "'lengths' that is <= 0"
        )
    steps = input.shape[1 - batch_dim]
    if lens.size and lens.max() > steps:
        raise RuntimeError(
            f"pack_padded_sequence: a length of {int(lens.max())} exceeds the padded "
            f"sequence length {steps}"
        )
    if enforce_sorted:
        if np.any(np.diff(lens) > 0):
            raise RuntimeError(
                "`lengths` array must be sorted in decreasing order when `enforce_sorted` is "
                "True. You can pass `enforce_sorted=False` to pack_padded_sequence and/or "
                "pack_sequence to sidestep this requirement if you do not need ONNX "
                "exportability."
            )
        order = np.arange(lens.size)
        sorted_indices = None
    else:
        order = np.argsort(-lens, kind="stable")
        sorted_indices = Tensor(order.astype(np.int64))
    sorted_lengths = lens[order]
    batch_sizes = _batch_sizes(sorted_lengths)
    # flat row index (t * B + b) of every packed element, time-major
    batch = lens.size
    t_idx = np.concatenate([np.full(b, t) for t, b in enumerate(batch_sizes)])
    b_idx = np.concatenate([order[:b] for b in batch_sizes])
    if batch_first:
        flat = b_idx * steps + t_idx
    else:
        flat = t_idx * batch + b_idx
    rows = input.reshape(steps * batch, *input.shape[2:])
    data = rows[Tensor(flat.astype(np.int64)).to(input.device)]
    return PackedSequence(
        data, Tensor(batch_sizes), sorted_indices, invert_permutation(sorted_indices)
    )


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
):
    """The inverse of ``pack_padded_sequence``: ``(padded, lengths)`` with ``padded`` of shape
    ``(T, B, *)`` (``(B, T, *)`` if ``batch_first``) in the caller's batch order, filled with
    ``padding_value``; ``T`` is ``total_length`` if given."""
    data, batch_sizes, _, unsorted = sequence
    sizes = np.asarray(batch_sizes.array).astype(np.int64)
    steps, batch = len(sizes), int(sizes[0])
    if total_length is not None:
        if total_length < steps:
            raise ValueError(
                f"Expected total_length to be at least the length of the longest sequence "
                f"in input, but got total_length={total_length} and max sequence length "
                f"being {steps}"
            )
        steps = total_length
    sorted_lengths = np.array([(sizes > b).sum() for b in range(batch)], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    pos = np.arange(batch) if unsorted is None else np.asarray(unsorted.array)
    pad_row = data.shape[0]
    index = np.full((steps, batch), pad_row, dtype=np.int64)
    for t in range(len(sizes)):
        active = pos < sizes[t]
        index[t, active] = offsets[t] + pos[active]
    if batch_first:
        index = index.T
    filler = ops.full((1, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    rows = ops.cat([data, filler])
    padded = rows[Tensor(index.reshape(-1)).to(data.device)]
    padded = padded.reshape(*index.shape, *data.shape[1:])
    return padded, Tensor(sorted_lengths[pos])


def pad_sequence(
    sequences,
    batch_first: bool = False,
    padding_value: float = 0.0,
    padding_side: str = "right",
) -> Tensor:
    """Stack tensors of shapes ``(L_i, *)`` into ``(max L, B, *)`` (``(B, max L, *)`` if
    ``batch_first``), padded with ``padding_value`` on ``padding_side``."""
    if isinstance(sequences, Tensor):
        sequences = list(sequences.unbind(0))
    sequences = list(sequences)
    if not sequences:
        raise RuntimeError("received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(
            f"Expected padding_side to be one of left or right, but got {padding_side}."
        )
    trailing = sequences[0].shape[1:]
    for i, s in enumerate(sequences):
        if s.ndim == 0 or s.shape[1:] != trailing:
            raise RuntimeError(
                f"pad_sequence: every sequence must have the trailing shape {list(trailing)} "
                f"of the first one, but sequence {i} has shape {list(s.shape)}"
            )
    lengths = [s.shape[0] for s in sequences]
    longest, batch = max(lengths), len(sequences)
    first = sequences[0]
    filler = ops.full((1, *trailing), padding_value, dtype=first.dtype, device=first.device)
    rows = ops.cat([*sequences, filler])
    pad_row = rows.shape[0] - 1
    index = np.full((longest, batch), pad_row, dtype=np.int64)
    start = 0
    for b, n in enumerate(lengths):
        t0 = 0 if padding_side == "right" else longest - n
        index[t0 : t0 + n, b] = np.arange(start, start + n)
        start += n
    if batch_first:
        index = index.T
    out = rows[Tensor(index.reshape(-1)).to(first.device)]
    return out.reshape(*index.shape, *trailing)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list:
    """The list of unpadded sequences ``padded[:L_i, i]`` (the inverse of ``pad_sequence``)."""
    lens = _lengths(lengths)
    if not batch_first:
        padded_sequences = padded_sequences.transpose(0, 1)
    return [padded_sequences[i, : int(n)] for i, n in enumerate(lens)]


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of tensors of shapes ``(L_i, *)`` (decreasing ``L_i`` unless
    ``enforce_sorted=False``)."""
    lengths = [s.shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """The list of sequences a ``PackedSequence`` holds, in the caller's order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
