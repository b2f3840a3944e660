"""Samplers: the order in which a DataLoader visits a map-style dataset (as torch.utils.data).

Random samplers draw from a ``distgrad.Generator`` (or a numpy ``Generator``); without one they
use the default stream, so ``distgrad.manual_seed`` makes every epoch's order reproducible."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..backend import random as _random

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler"]


def numpy_rng(generator) -> np.random.Generator:
    """The numpy Generator behind ``generator`` (a distgrad or numpy Generator, or None for the
    default stream)."""
    if isinstance(generator, np.random.Generator):
        return generator
    return (generator or _random.default_generator).numpy


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} should be a positive integer value, but got {name}={value!r}")


class Sampler:
    """Base class: subclasses implement ``__iter__`` (indices, or lists of indices for batch
    samplers) and usually ``__len__``."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self) -> Iterator:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class SequentialSampler(Sampler):
    """Indices ``0, 1, ..., len(data_source) - 1`` in order."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation of the indices, or ``num_samples`` indices drawn with replacement.

    Without replacement, ``num_samples`` larger than the dataset chains several permutations."""

    def __init__(
        self, data_source, replacement: bool = False, num_samples: int | None = None, generator=None
    ):
        if not isinstance(replacement, bool):
            raise TypeError(
                f"replacement should be a boolean value, but got replacement={replacement!r}"
            )
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        _check_positive_int("num_samples", self.num_samples)

    @property
    def num_samples(self) -> int:
        """How many indices one pass yields (``len(data_source)`` unless given)."""
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        # drawn lazily, as PyTorch: num_samples may be far larger than memory (minGPT asks
        # for 10**10 with replacement and stops after a few batches). As in PyTorch, the
        # epoch's stream without a generator is a private one seeded by one draw of the
        # default stream, so other draws made while the epoch runs (dropout, ...) do not
        # change its order.
        n, count, rng = len(self.data_source), self.num_samples, numpy_rng(self.generator)
        if self.generator is None:
            rng = np.random.default_rng(int(rng.integers(2**63)))
        if self.replacement:
            return self._with_replacement(rng, n, count)
        return self._permutations(rng, n, count)

    @staticmethod
    def _with_replacement(rng, n: int, count: int) -> Iterator[int]:
        for start in range(0, count, 32):
            yield from rng.integers(0, n, size=min(32, count - start)).tolist()

    @staticmethod
    def _permutations(rng, n: int, count: int) -> Iterator[int]:
        for start in range(0, count, n):
            yield from rng.permutation(n)[: count - start].tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order (a new order each epoch)."""

    def __init__(self, indices: Sequence[int], generator=None):
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        order = numpy_rng(self.generator).permutation(len(self.indices))
        return (self.indices[i] for i in order.tolist())

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups the indices of ``sampler`` into lists of ``batch_size``; the last, shorter batch
    is dropped when ``drop_last``."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        _check_positive_int("batch_size", batch_size)
        if not isinstance(drop_last, bool):
            raise ValueError(
                f"drop_last should be a boolean value, but got drop_last={drop_last!r}"
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list]:
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
