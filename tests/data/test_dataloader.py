"""DataLoader: batching, shuffling, collation, and worker processes."""

import collections
import multiprocessing
import os
import random
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import distgrad as dg
from distgrad.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
    default_collate,
    default_convert,
    get_worker_info,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Squares(Dataset):
    """Sample i is (float32 vector [i, i*i], int label i); items with i % 4 == 0 are slow, so
    workers finish out of order."""

    def __init__(self, n=20, slow=0.0):
        self.n, self.slow = n, slow

    def __getitem__(self, i):
        if self.slow and i % 4 == 0:
            time.sleep(self.slow)
        return np.array([i, i * i], dtype=np.float32), i

    def __len__(self):
        return self.n


class FailsAt(Dataset):
    def __init__(self, bad):
        self.bad = bad

    def __getitem__(self, i):
        if i == self.bad:
            raise ValueError(f"sample {i} is broken")
        return i

    def __len__(self):
        return 12


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)


class RaisesOddError(Dataset):
    def __getitem__(self, i):
        raise NeedsTwoArgs(1, 2)

    def __len__(self):
        return 4


class Exits(Dataset):
    def __getitem__(self, i):
        os._exit(3)

    def __len__(self):
        return 4


class Sleeps(Dataset):
    def __getitem__(self, i):
        time.sleep(3)
        return i

    def __len__(self):
        return 4


class RandomDraws(Dataset):
    """Each sample reports its worker and draws from every seeded stream."""

    def __getitem__(self, i):
        info = get_worker_info()
        return {
            "worker": info.id if info else -1,
            "py": random.random(),
            "np": float(np.random.rand()),
            "dg": dg.rand(1).item(),
        }

    def __len__(self):
        return 8


class Stream(IterableDataset):
    """0..n-1, sharded across workers by get_worker_info()."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


def labels(loader):
    return [batch[1].tolist() for batch in loader]


def test_batches_and_len():
    loader = DataLoader(Squares(10), batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    x, y = batches[0]
    assert x.shape == (4, 2) and x.dtype == dg.float32 and y.dtype == dg.int64
    np.testing.assert_array_equal(x.numpy(), [[0, 0], [1, 1], [2, 4], [3, 9]])
    assert labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_drop_last():
    loader = DataLoader(Squares(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and labels(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_shuffle_reproducible_from_generator():
    def epochs(seed):
        loader = DataLoader(
            Squares(10), batch_size=3, shuffle=True, generator=dg.Generator().manual_seed(seed)
        )
        return [sum(labels(loader), []) for _ in range(2)]

    first, second = epochs(7)
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert first != second  # every epoch a new order
    assert epochs(7) == [first, second]
    assert epochs(8) != [first, second]


def test_shuffle_follows_manual_seed():
    dg.manual_seed(3)
    a = labels(DataLoader(Squares(10), batch_size=5, shuffle=True))
    dg.manual_seed(3)
    assert labels(DataLoader(Squares(10), batch_size=5, shuffle=True)) == a


def test_collate_tuples_dicts_namedtuples_numbers():
    Point = collections.namedtuple("Point", "x y")
    batch = [
        {
            "img": np.full((2, 2), i, dtype=np.float32),
            "label": i,
            "weight": i / 2,
            "name": f"s{i}",
            "pair": (dg.tensor([i, i]), True),
            "pt": Point(i, 2.0 * i),
        }
        for i in range(3)
    ]
    out = default_collate(batch)
    assert set(out) == {"img", "label", "weight", "name", "pair", "pt"}
    assert out["img"].shape == (3, 2, 2) and out["img"].dtype == dg.float32
    assert out["label"].tolist() == [0, 1, 2] and out["label"].dtype == dg.int64
    assert out["weight"].dtype == dg.float64 and out["weight"].tolist() == [0.0, 0.5, 1.0]
    assert out["name"] == ["s0", "s1", "s2"]
    assert isinstance(out["pair"], list)  # tuples of fields become lists, as in PyTorch
    assert out["pair"][0].tolist() == [[0, 0], [1, 1], [2, 2]]
    assert out["pair"][1].dtype == dg.bool
    assert isinstance(out["pt"], Point) and out["pt"].y.tolist() == [0.0, 2.0, 4.0]
    assert default_collate([np.float32(1), np.float32(2)]).dtype == dg.float32


def test_collate_errors():
    with pytest.raises(
        RuntimeError,
        match=r"equal size, but got \[2\] at entry 0 and \[3\] "
        r"at entry 1",
    ):
        default_collate([dg.zeros(2), dg.zeros(3)])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([(1, 2), (1, 2, 3)])
    with pytest.raises(TypeError, match="found object"):
        default_collate([object(), object()])


def test_batch_size_none_converts_samples():
    loader = DataLoader(Squares(3), batch_size=None)
    out = list(loader)
    assert len(out) == 3 and len(loader) == 3
    assert isinstance(out[1], list) and out[1][0].tolist() == [1.0, 1.0] and out[1][1] == 1
    assert default_convert({"a": np.zeros(2), "b": "text"})["b"] == "text"


def test_custom_batch_sampler_and_collate_fn():
    batches = [[3, 1], [0], [2, 4]]
    loader = DataLoader(
        Squares(5), batch_sampler=batches, collate_fn=lambda items: [label for _, label in items]
    )
    assert list(loader) == batches and len(loader) == 3


def test_argument_validation():
    ds = Squares(4)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_sampler=BatchSampler(SequentialSampler(ds), 2, False), batch_size=2)
    with pytest.raises(ValueError, match="expected unspecified shuffle"):
        DataLoader(Stream(4), shuffle=True)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="persistent_workers"):
        DataLoader(ds, persistent_workers=True)


def test_iterable_dataset_single_process():
    loader = DataLoader(Stream(7), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(loader) == 3
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [
        [0, 1, 2],
        [3, 4, 5],
    ]


# ---- worker processes ------------------------------------------------------------------
def test_workers_preserve_order_and_match_single_process():
    ds = Squares(22, slow=0.01)
    kwargs = dict(batch_size=3, shuffle=True)
    single = list(DataLoader(ds, generator=dg.Generator().manual_seed(4), **kwargs))
    multi = list(DataLoader(ds, num_workers=2, generator=dg.Generator().manual_seed(4), **kwargs))
    assert len(single) == len(multi) == 8
    for (xs, ys), (xm, ym) in zip(single, multi):
        np.testing.assert_array_equal(xs.numpy(), xm.numpy())
        assert ys.tolist() == ym.tolist()
    assert multiprocessing.active_children() == []


def test_iterable_dataset_with_workers():
    loader = DataLoader(Stream(11), batch_size=2, num_workers=2)
    batches = [b.tolist() for b in loader]
    # worker 0 yields 0,2,4,..., worker 1 yields 1,3,5,...; batches alternate between them
    assert batches == [[0, 2], [1, 3], [4, 6], [5, 7], [8, 10], [9]]
    assert multiprocessing.active_children() == []


def test_worker_exception_carries_traceback():
    loader = DataLoader(FailsAt(5), batch_size=2, num_workers=2)
    it = iter(loader)
    assert next(it).tolist() == [0, 1] and next(it).tolist() == [2, 3]
    with pytest.raises(ValueError) as info:
        next(it)
    message = str(info.value)
    assert "Caught ValueError in DataLoader worker process 0" in message
    assert "sample 5 is broken" in message and "in __getitem__" in message
    assert next(it).tolist() == [6, 7]  # the iterator goes on, as in PyTorch
    del it, info
    assert multiprocessing.active_children() == []


def test_worker_exception_of_unusual_type_becomes_runtime_error():
    with pytest.raises(RuntimeError, match="Caught NeedsTwoArgs"):
        list(DataLoader(RaisesOddError(), batch_size=2, num_workers=1))
    assert multiprocessing.active_children() == []


def test_unpicklable_batch_is_an_error_not_a_hang():
    loader = DataLoader(
        Squares(4), batch_size=2, num_workers=1, collate_fn=lambda items: lambda: items
    )
    with pytest.raises(Exception, match="Caught .* in DataLoader worker process 0"):
        next(iter(loader))
    assert multiprocessing.active_children() == []


def test_break_leaves_no_worker_processes():
    loader = DataLoader(Squares(40), batch_size=2, num_workers=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    assert multiprocessing.active_children() == []
    it = iter(loader)
    pids = [w.pid for w in it._workers]
    next(it)
    del it
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.multiprocess
def test_workers_exit_when_main_process_dies():
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {ROOT!r})
        from tests.data.test_dataloader import Squares
        from distgrad.data import DataLoader
        it = iter(DataLoader(Squares(1000, slow=0.0), batch_size=2, num_workers=2))
        next(it)
        print(" ".join(str(w.pid) for w in it._workers), flush=True)
        os._exit(0)  # no cleanup at all, as if killed
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    pids = [int(p) for p in out.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in pids if _alive(p)]
    assert alive == [], f"workers {alive} outlived their main process"


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # reparented zombies wait for init to reap them
    except FileNotFoundError:
        return False


def test_persistent_workers_across_epochs():
    loader = DataLoader(Squares(9), batch_size=2, num_workers=2, persistent_workers=True)
    assert labels(loader) == [[0, 1], [2, 3], [4, 5], [6, 7], [8]]
    pids = [w.pid for w in loader._iterator._workers]
    for i, _ in enumerate(loader):  # abandon an epoch midway ...
        if i == 1:
            break
    assert labels(loader) == [[0, 1], [2, 3], [4, 5], [6, 7], [8]]  # ... the next is whole
    assert [w.pid for w in loader._iterator._workers] == pids
    loader._iterator._shutdown()
    assert multiprocessing.active_children() == []


def test_worker_seeds_distinct_and_reproducible():
    def draws(seed):
        loader = DataLoader(
            RandomDraws(),
            batch_size=2,
            num_workers=2,
            generator=dg.Generator().manual_seed(seed),
            worker_init_fn=lambda wid: random.seed(random.random() + wid),
        )
        return [
            (int(b["worker"][0]), b["py"].tolist(), b["np"].tolist(), b["dg"].tolist())
            for b in loader
        ]

    first = draws(1)
    assert [w for w, *_ in first] == [0, 1, 0, 1]
    assert first[0][1:] != first[1][1:]  # the two workers draw different numbers
    for stream in (1, 2, 3):
        assert first[0][stream] != first[1][stream]
    assert draws(1) == first
    assert draws(2) != first


def test_worker_init_fn_error_is_reported():
    def bad_init(worker_id):
        raise OSError(f"cannot open shard for worker {worker_id}")

    with pytest.raises(OSError, match="cannot open shard for worker 0"):
        next(iter(DataLoader(Squares(4), batch_size=2, num_workers=1, worker_init_fn=bad_init)))
    assert multiprocessing.active_children() == []


def test_timeout():
    loader = DataLoader(Sleeps(), batch_size=1, num_workers=1, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 0.3 seconds"):
        next(iter(loader))
    assert time.monotonic() - start < 2.5
    assert multiprocessing.active_children() == []


def test_dead_worker_is_reported():
    with pytest.raises(RuntimeError, match="exited unexpectedly.*exit code 3"):
        list(DataLoader(Exits(), batch_size=2, num_workers=1))
    assert multiprocessing.active_children() == []


def test_tensor_dataset_with_workers():
    x = dg.randn(10, 3)
    y = dg.arange(10)
    batches = list(DataLoader(TensorDataset(x, y), batch_size=4, num_workers=2))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x.numpy())
    assert sum((b[1].tolist() for b in batches), []) == list(range(10))


def test_persistent_workers_restart_iterable_streams():
    loader = DataLoader(Stream(5), batch_size=2, num_workers=2, persistent_workers=True)
    assert [b.tolist() for b in loader] == [[0, 2], [1, 3], [4]]
    assert [b.tolist() for b in loader] == [[0, 2], [1, 3], [4]]
    loader._iterator._shutdown()


@pytest.mark.slow
def test_forkserver_context():
    # workers that are not children of the main process (Python 3.14's default start method)
    loader = DataLoader(
        Stream(5), batch_size=2, num_workers=2, multiprocessing_context="forkserver"
    )
    assert [b.tolist() for b in loader] == [[0, 2], [1, 3], [4]]
    assert multiprocessing.active_children() == []
