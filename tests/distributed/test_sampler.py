"""DistributedSampler: each rank's share, padding, drop_last, epochs."""

import numpy as np
import pytest

from distgrad.data import DataLoader, TensorDataset
from distgrad.data.distributed import DistributedSampler


def shares(n, replicas, **kw):
    return [list(DistributedSampler(range(n), replicas, r, **kw)) for r in range(replicas)]


@pytest.mark.parametrize("n, replicas", [(10, 2), (10, 3), (2, 3), (12, 4)])
def test_pads_to_equal_shares_covering_everything(n, replicas):
    parts = shares(n, replicas)
    size = -(-n // replicas)
    assert all(len(p) == size for p in parts)
    flat = sum(parts, [])
    assert sorted(set(flat)) == list(range(n))
    assert len(flat) - n == size * replicas - n  # only the padding repeats


def test_drop_last_drops_the_tail():
    parts = shares(10, 3, drop_last=True)
    assert [len(p) for p in parts] == [3, 3, 3]
    flat = sum(parts, [])
    assert len(set(flat)) == 9


def test_without_shuffle_ranks_take_strided_indices():
    assert shares(7, 2, shuffle=False) == [[0, 2, 4, 6], [1, 3, 5, 0]]


def test_epochs_and_seeds():
    s = DistributedSampler(range(50), 2, 0, seed=3)
    first = list(s)
    assert list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    other = DistributedSampler(range(50), 2, 1, seed=3)
    other.set_epoch(1)
    assert not set(s) & set(other)  # the same permutation on both ranks


def test_invalid_rank_and_missing_world():
    with pytest.raises(ValueError, match="Invalid rank 2"):
        DistributedSampler(range(4), 2, 2)
    with pytest.raises(RuntimeError, match="distgrad.distributed.init"):
        DistributedSampler(range(4))


def test_every_rank_gets_the_same_number_of_batches():
    data = TensorDataset(np.arange(11.0))
    lengths = {
        len(DataLoader(data, batch_size=2, sampler=DistributedSampler(data, 3, r)))
        for r in range(3)
    }
    assert lengths == {2}
