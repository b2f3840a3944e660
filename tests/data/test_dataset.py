"""Datasets, samplers and random_split."""

import numpy as np
import pytest

import distgrad as dg
from distgrad.data import (
    BatchSampler,
    ConcatDataset,
    Dataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    random_split,
)


class Range(Dataset):
    def __init__(self, start, stop):
        self.values = list(range(start, stop))

    def __getitem__(self, i):
        return self.values[i]

    def __len__(self):
        return len(self.values)


def test_tensor_dataset_rows():
    x = dg.tensor(np.arange(12.0).reshape(4, 3))
    y = dg.tensor([5, 6, 7, 8])
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    row, label = ds[2]
    np.testing.assert_array_equal(row.numpy(), [6.0, 7.0, 8.0])
    assert label.shape == () and label.item() == 7 and label.dtype == dg.int64
    np.testing.assert_array_equal(ds[-1][0].numpy(), [9.0, 10.0, 11.0])


def test_tensor_dataset_size_mismatch():
    with pytest.raises(ValueError, match="Size mismatch.*\\(4, 3\\).*\\(5,\\)"):
        TensorDataset(dg.zeros(4, 3), dg.zeros(5))


def test_concat_and_subset():
    ds = ConcatDataset([Range(0, 3), Range(10, 12)]) + Range(20, 21)
    assert len(ds) == 6
    assert [ds[i] for i in range(6)] == [0, 1, 2, 10, 11, 20]
    assert ds[-1] == 20 and ds[-6] == 0
    with pytest.raises(IndexError):
        ds[6]
    sub = Subset(ds, [5, 0, 3])
    assert len(sub) == 3 and [sub[i] for i in range(3)] == [20, 0, 10]
    assert sub[[0, 2]] == [20, 10]


def test_random_split_integer_lengths():
    parts = random_split(Range(0, 10), [3, 7], generator=dg.Generator().manual_seed(1))
    assert [len(p) for p in parts] == [3, 7]
    items = sorted(p[i] for p in parts for i in range(len(p)))
    assert items == list(range(10))
    again = random_split(Range(0, 10), [3, 7], generator=dg.Generator().manual_seed(1))
    assert [list(p.indices) for p in parts] == [list(p.indices) for p in again]
    other = random_split(Range(0, 10), [3, 7], generator=dg.Generator().manual_seed(2))
    assert [list(p.indices) for p in parts] != [list(p.indices) for p in other]


def test_random_split_fractions():
    assert [len(p) for p in random_split(Range(0, 10), [0.3, 0.7])] == [3, 7]
    # 10 * 1/3 = 3.33: the remainder goes one at a time to the first splits, as in PyTorch
    assert [len(p) for p in random_split(Range(0, 10), [1 / 3] * 3)] == [4, 3, 3]
    with pytest.warns(UserWarning, match="split at index 1 is 0"):
        random_split(Range(0, 2), [0.99, 0.01])


def test_random_split_default_generator_follows_manual_seed():
    dg.manual_seed(5)
    a = [list(p.indices) for p in random_split(Range(0, 8), [4, 4])]
    dg.manual_seed(5)
    b = [list(p.indices) for p in random_split(Range(0, 8), [4, 4])]
    assert a == b


@pytest.mark.parametrize("lengths", [[3, 8], [5, 4], [-1, 11], [2.5, 7.5]])
def test_random_split_bad_lengths(lengths):
    with pytest.raises(ValueError):
        random_split(Range(0, 10), lengths)


def test_sequential_and_random_sampler():
    ds = Range(0, 7)
    assert list(SequentialSampler(ds)) == list(range(7))
    s = RandomSampler(ds, generator=dg.Generator().manual_seed(0))
    first, second = list(s), list(s)
    assert sorted(first) == sorted(second) == list(range(7)) and len(s) == 7
    assert first != second  # a new permutation every epoch
    expected = np.random.default_rng(0).permutation(7).tolist()
    assert first == expected


def test_random_sampler_num_samples_and_replacement():
    ds = Range(0, 4)
    s = RandomSampler(ds, num_samples=10, generator=dg.Generator().manual_seed(0))
    drawn = list(s)
    assert len(drawn) == len(s) == 10
    assert np.bincount(drawn).tolist() in (
        [3, 3, 2, 2],
        [3, 2, 3, 2],
        [3, 2, 2, 3],
        [2, 3, 3, 2],
        [2, 3, 2, 3],
        [2, 2, 3, 3],
    )
    r = RandomSampler(
        ds, replacement=True, num_samples=50, generator=np.random.default_rng(3)
    )  # a numpy Generator works too
    drawn = list(r)
    assert len(drawn) == 50 and set(drawn) <= set(range(4))
    with pytest.raises(ValueError, match="num_samples"):
        RandomSampler(ds, num_samples=0)
    with pytest.raises(TypeError, match="replacement"):
        RandomSampler(ds, replacement=1)


def test_subset_random_sampler():
    s = SubsetRandomSampler([10, 20, 30, 40], generator=dg.Generator().manual_seed(0))
    out = list(s)
    assert sorted(out) == [10, 20, 30, 40] and len(s) == 4


def test_batch_sampler():
    s = SequentialSampler(Range(0, 10))
    assert list(BatchSampler(s, 4, False)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(BatchSampler(s, 4, True)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(BatchSampler(s, 4, False)) == 3 and len(BatchSampler(s, 4, True)) == 2
    assert len(BatchSampler(s, 5, True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        BatchSampler(s, 0, False)
    with pytest.raises(ValueError, match="drop_last"):
        BatchSampler(s, 2, 0)
