"""``DistributedSampler.start_index``: a global sample index that resumes an epoch on any
number of ranks without skipping or repeating a sample (no processes: ranks simulated)."""

import pytest

from distgrad.data import DistributedSampler


def _orders(n, world, start=0, drop_last=False):
    out = []
    for rank in range(world):
        s = DistributedSampler(range(n), world, rank, seed=3, drop_last=drop_last)
        s.set_epoch(2)
        s.start_index = start
        out.append(list(s))
        assert s.start_index == 0  # used once
    return out


@pytest.mark.parametrize("n", [45, 48])
@pytest.mark.parametrize("drop_last", [False, True])
def test_same_world_resumes_the_tail_exactly(n, drop_last):
    whole = _orders(n, 3, drop_last=drop_last)
    for done in (1, 4, 7):
        assert _orders(n, 3, 3 * done, drop_last) == [r[done:] for r in whole]


@pytest.mark.parametrize(("before", "after"), [(4, 1), (4, 2), (4, 3), (3, 4), (2, 3)])
def test_other_world_sees_every_sample_once(before, after):
    n, per_rank_done = 48, 12 // before  # one global batch of 12 done; the rest divides
    first = _orders(n, before)
    seen = [i for r in first for i in r[:per_rank_done]]
    rest = _orders(n, after, start=per_rank_done * before, drop_last=True)
    seen += [i for r in rest for i in r]
    assert sorted(seen) == list(range(n))
