"""PowerSGD (Vogels, Karimireddy, Jaggi 2019): ``PowerSGDState``, ``powerSGD_hook`` and
``batched_powerSGD_hook`` (``torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook``, same
arguments and steps).

For each gradient M (n x m, a parameter viewed as ``(shape[0], -1)``) with
r = min(n, m, matrix_approximation_rank): P = M Q; allreduce P; orthogonalize P; Q = M^T P;
allreduce Q and divide by the world size; the reduced gradient is P Q^T, the projection of the
average gradient onto the shared r-dimensional column space (exact when that average has rank
<= r). Sent: 2 (n + m) r elements instead of 2 n m. 1-D tensors, and matrices where
n m <= (n + m) r * ``min_compression_rate``, are averaged uncompressed in one allreduce with them.

- ``start_powerSGD_iter``: the first steps are plain allreduces (vanilla SGD warm-up);
- ``use_error_feedback``: this rank's residual (its input minus the reduced approximation)
  is kept per bucket and added to the next step's input;
- ``warm_start``: Q of the previous step starts the next one (else a new random Q each step);
- Q's random start comes from ``random_seed``, the same on every rank.

The P and the uncompressed allreduces start inside the hook (overlapping backward); the Q
allreduce starts when the reducer waits for the bucket at the end of backward, in bucket order.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ....autograd import Tensor
from ....backend import array_module_for
from ....futures import Future
from ...grad_bucket import GradBucket
from ...groups import ProcessGroup
from .default_hooks import allreduce_sum, group_size

__all__ = [
    "PowerSGDState",
    "powerSGD_hook",
    "batched_powerSGD_hook",
    "should_compress",
    "batched_side",
]

logger = logging.getLogger(__name__)


def should_compress(rows: int, cols: int, rank: int, min_compression_rate: float) -> tuple:
    """``(compress?, uncompressed elements, compressed elements)`` for an n x m matrix at
    ``rank`` (PyTorch's ``_should_compress``)."""
    uncompressed = rows * cols
    compressed = (rows + cols) * rank
    return compressed * min_compression_rate < uncompressed, uncompressed, compressed


class PowerSGDState:
    """PowerSGD's settings and per-bucket memory (PyTorch's arguments and defaults):
    ``process_group`` (None: the DDP's), ``matrix_approximation_rank``,
    ``start_powerSGD_iter``, ``min_compression_rate``, ``use_error_feedback``,
    ``warm_start``, ``orthogonalization_epsilon`` (0: QR; else Gram-Schmidt dividing by
    norm + epsilon), ``random_seed``, ``compression_stats_logging_frequency``,
    ``batch_tensors_with_same_shape`` (accepted; tensors are always batched into one buffer
    per bucket). ``error_dict``, ``p_memory_dict``, ``q_memory_dict`` are keyed by bucket
    index; ``iter`` counts steps."""

    def __init__(
        self,
        process_group: ProcessGroup | None,
        matrix_approximation_rank: int = 1,
        start_powerSGD_iter: int = 1_000,
        min_compression_rate: float = 2,
        use_error_feedback: bool = True,
        warm_start: bool = True,
        orthogonalization_epsilon: float = 0,
        random_seed: int = 0,
        compression_stats_logging_frequency: int = 10_000,
        batch_tensors_with_same_shape: bool = False,
    ):
        if not isinstance(matrix_approximation_rank, int) or matrix_approximation_rank < 1:
            raise ValueError(
                f"PowerSGDState: matrix_approximation_rank must be an int >= 1, got "
                f"{matrix_approximation_rank!r}"
            )
        if (use_error_feedback or warm_start) and start_powerSGD_iter <= 1:
            raise ValueError(
                "Expect `start_powerSGD_iter` > 1 if `use_error_feedback` or `warm_start` is "
                "enabled, because PowerSGD can only be applied after the first two iterations "
                "in DDP."
            )
        self.process_group = process_group
        self.matrix_approximation_rank = matrix_approximation_rank
        self.start_powerSGD_iter = start_powerSGD_iter
        self.min_compression_rate = min_compression_rate
        self.use_error_feedback = use_error_feedback
        self.warm_start = warm_start
        self.orthogonalization_epsilon = orthogonalization_epsilon
        self.random_seed = random_seed
        self.rng = np.random.RandomState(random_seed)
        self.compression_stats_logging_frequency = max(1, compression_stats_logging_frequency)
        self.batch_tensors_with_same_shape = batch_tensors_with_same_shape
        self.error_dict: dict = {}
        self.p_memory_dict: dict = {}
        self.q_memory_dict: dict = {}
        self.iter = 0
        self.total_numel_before_compression = 0
        self.total_numel_after_compression = 0

    def maybe_increase_iter(self, bucket: GradBucket) -> None:
        """Count a step after its last bucket."""
        if bucket.is_last():
            self.iter += 1
            if self.iter == self.start_powerSGD_iter:
                logger.info("PowerSGD starts compressing at step %d", self.iter)

    def compression_stats(self) -> tuple:
        """``(compression rate, elements before, elements after)`` summed over the steps."""
        before, after = self.total_numel_before_compression, self.total_numel_after_compression
        return (before / after if after > 0 else 0.0), before, after

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("process_group", None)  # as PyTorch: a group does not pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.process_group = None


def _orthogonalize(matrix: Any, epsilon: float) -> None:
    """Make the columns of ``matrix`` (n x r) orthonormal, in place."""
    xp = array_module_for(matrix)
    if epsilon == 0:
        matrix[...] = xp.linalg.qr(matrix)[0]
        return
    cols = matrix.shape[1]
    for i in range(cols):
        col = matrix[:, i : i + 1]
        col /= xp.linalg.norm(col) + epsilon
        if i + 1 < cols:
            rest = matrix[:, i + 1 :]
            rest -= (col * rest).sum(axis=0) * col


def _plain_before_start(state: PowerSGDState, bucket: GradBucket, world: int) -> Future | None:
    """Before ``state.start_powerSGD_iter`` steps: the bucket averaged by a plain allreduce
    (its future); None once PowerSGD runs."""
    if state.iter >= state.start_powerSGD_iter:
        return None
    state.maybe_increase_iter(bucket)
    buffer = bucket.buffer()
    flat = buffer.array
    array_module_for(flat).multiply(flat, 1.0 / world, out=flat)
    bucket._report_error(0.0, 0.0)
    return allreduce_sum(state.process_group, buffer, bucket).then(lambda fut: fut.value()[0])


def powerSGD_hook(state: PowerSGDState, bucket: GradBucket) -> Future:
    """Reduce the bucket with PowerSGD (see the module docstring); before
    ``state.start_powerSGD_iter`` steps, a plain averaging allreduce."""
    group = state.process_group
    world = group_size(group, bucket)
    buffer = bucket.buffer()
    flat = buffer.array
    xp = array_module_for(flat)
    warm_up = _plain_before_start(state, bucket, world)
    if warm_up is not None:
        return warm_up

    index = bucket.index()
    if state.use_error_feedback:
        if index in state.error_dict:
            flat += state.error_dict[index]
        else:
            state.error_dict[index] = xp.zeros_like(flat)
        input_copy = flat.copy()

    rank = state.matrix_approximation_rank
    compress, plain = [], []
    for grad in bucket.gradients():
        array = grad.array
        if array.ndim <= 1:
            plain.append(array)
            continue
        matrix = array.reshape(array.shape[0], -1)
        n, m = matrix.shape
        r = min(n, m, rank)
        ok, _, after = should_compress(n, m, r, state.min_compression_rate)
        if ok:
            compress.append((matrix, r))
            state.total_numel_before_compression += n * m
            state.total_numel_after_compression += after
        else:
            plain.append(array)
    plain_size = sum(a.size for a in plain)
    state.total_numel_before_compression += plain_size
    state.total_numel_after_compression += plain_size

    # the uncompressed tensors, averaged in one buffer
    plain_memory: Any = None  # an xp array
    plain_future: Future | None = None
    plain_sq = 0.0
    if plain:
        plain_memory = xp.concatenate([a.reshape(-1) for a in plain])
        plain_sq = float(xp.vdot(plain_memory, plain_memory))
        plain_memory *= 1.0 / world
        plain_future = allreduce_sum(group, Tensor(plain_memory), bucket)

    # P = M Q with Q from the last step (warm start) or random (the same on every rank)
    p_total = sum(mat.shape[0] * r for mat, r in compress)
    q_total = sum(mat.shape[1] * r for mat, r in compress)
    fresh = not state.warm_start or index not in state.p_memory_dict
    if fresh:
        state.p_memory_dict[index] = xp.empty(p_total, flat.dtype)
        state.q_memory_dict[index] = xp.empty(q_total, flat.dtype)
    p_memory, q_memory = state.p_memory_dict[index], state.q_memory_dict[index]
    ps, qs, p_at, q_at = [], [], 0, 0
    for matrix, r in compress:
        n, m = matrix.shape
        ps.append(p_memory[p_at : p_at + n * r].reshape(n, r))
        qs.append(q_memory[q_at : q_at + m * r].reshape(m, r))
        p_at, q_at = p_at + n * r, q_at + m * r
    if fresh:
        seed = state.rng.randint(1_000_000_000)
        generator = np.random.default_rng(seed)
        for q in qs:
            q[...] = xp.asarray(generator.standard_normal(q.shape))
            _orthogonalize(q, state.orthogonalization_epsilon)
    for (matrix, _), q, p in zip(compress, qs, ps):
        xp.matmul(matrix, q, out=p)
    if compress:
        p_future = allreduce_sum(group, Tensor(p_memory), bucket)
    else:
        p_future = Future()
        p_future.set_result(None)

    def compute_qs(fut: Future) -> None:
        if plain_future is not None:
            plain_future.wait()
            at = 0
            for array in plain:  # unpack the averaged uncompressed tensors
                array[...] = plain_memory[at : at + array.size].reshape(array.shape)
                at += array.size
        fut.value()
        error_sq, input_sq = 0.0, plain_sq
        for (matrix, _), p, q in zip(compress, ps, qs):
            _orthogonalize(p, state.orthogonalization_epsilon)
            xp.matmul(matrix.T, p, out=q)
            m2, q2 = float(xp.vdot(matrix, matrix)), float(xp.vdot(q, q))
            error_sq, input_sq = error_sq + max(m2 - q2, 0.0), input_sq + m2
        bucket._report_error(error_sq, input_sq)
        if compress:
            allreduce_sum(group, Tensor(q_memory), bucket).wait()

    def decompress(fut: Future) -> Tensor:
        fut.value()
        xp.multiply(q_memory, 1.0 / world, out=q_memory)
        for (matrix, _), p, q in zip(compress, ps, qs):
            xp.matmul(p, q.T, out=matrix)
        if state.use_error_feedback:
            state.error_dict[index] = input_copy - flat
        if not state.warm_start:
            state.p_memory_dict.pop(index, None)
            state.q_memory_dict.pop(index, None)
        state.maybe_increase_iter(bucket)
        return buffer

    return p_future.then(compute_qs).then(decompress)


def batched_side(numel: int, rank: int) -> tuple:
    """``(side, r)``: a bucket of ``numel`` elements is compressed as one side x side matrix
    (zero-padded) at rank r = min(rank, side) (``batched_powerSGD_hook``)."""
    side = max(1, math.ceil(math.sqrt(numel)))
    return side, min(rank, side)


def batched_powerSGD_hook(state: PowerSGDState, bucket: GradBucket) -> Future:
    """PowerSGD on the whole bucket at once, viewed as one square matrix of side
    ceil(sqrt(numel)) (zero-padded): 4 side r elements sent instead of 2 numel, with the same
    warm-up, error feedback and warm start as ``powerSGD_hook``, but coarser (the bucket's
    tensors are not compressed one by one, and ``min_compression_rate`` is not applied)."""
    group = state.process_group
    world = group_size(group, bucket)
    buffer = bucket.buffer()
    flat = buffer.array
    xp = array_module_for(flat)
    warm_up = _plain_before_start(state, bucket, world)
    if warm_up is not None:
        return warm_up

    index, numel = bucket.index(), flat.size
    side, r = batched_side(numel, state.matrix_approximation_rank)
    state.total_numel_before_compression += numel
    state.total_numel_after_compression += 2 * side * r
    padded = xp.zeros(side * side, flat.dtype)
    padded[:numel] = flat
    if state.use_error_feedback:
        if index in state.error_dict:
            padded += state.error_dict[index]
        input_copy = padded.copy()
    matrix = padded.reshape(side, side)
    if not state.warm_start or index not in state.p_memory_dict:
        generator = np.random.default_rng(state.rng.randint(1_000_000_000))
        state.p_memory_dict[index] = xp.empty((side, r), flat.dtype)
        state.q_memory_dict[index] = xp.asarray(generator.standard_normal((side, r)))
        state.q_memory_dict[index] = state.q_memory_dict[index].astype(flat.dtype)
    p, q = state.p_memory_dict[index], state.q_memory_dict[index]
    _orthogonalize(q, state.orthogonalization_epsilon)
    xp.matmul(matrix, q, out=p)
    p_future = allreduce_sum(group, Tensor(p), bucket)

    def compute_q(fut: Future) -> None:
        fut.value()
        _orthogonalize(p, state.orthogonalization_epsilon)
        xp.matmul(matrix.T, p, out=q)
        m2, q2 = float(xp.vdot(matrix, matrix)), float(xp.vdot(q, q))
        bucket._report_error(max(m2 - q2, 0.0), m2)
        allreduce_sum(group, Tensor(q), bucket).wait()

    def decompress(fut: Future) -> Tensor:
        fut.value()
        xp.multiply(q, 1.0 / world, out=q)
        xp.matmul(p, q.T, out=matrix)
        if state.use_error_feedback:
            state.error_dict[index] = input_copy - padded
        flat[...] = padded[:numel]
        if not state.warm_start:
            state.p_memory_dict.pop(index, None)
            state.q_memory_dict.pop(index, None)
        state.maybe_increase_iter(bucket)
        return buffer

    return p_future.then(compute_q).then(decompress)
