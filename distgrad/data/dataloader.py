"""DataLoader (as torch.utils.data): batches from a dataset, in this process or in worker
processes.

With ``num_workers > 0`` each worker is a daemonic process reading tasks from its own pipe; the
main process hands out ``(epoch, task, indices)`` round-robin (``prefetch_factor`` tasks per
worker in flight), workers send back pickled batches on one result queue, and the main process
yields them in task order. A worker's exception comes back with its traceback and is raised in
the main process. Workers stop when the iterator is exhausted or garbage collected (and exit by
themselves if the main process dies). Worker ``i`` is seeded with ``base_seed + i`` (Python's
``random``, numpy's global RNG and distgrad's default stream), where ``base_seed`` is drawn from
the loader's generator each epoch, exactly as with ``num_workers=0`` — so the batch order
depends only on the seed, not on the number of workers. Persistent workers are seeded once and
keep their random streams across epochs."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import pickle
import queue
import random
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..autograd import Tensor
from ..backend import get_array_module
from ..backend import random as _random
from ..ops.creation import from_numpy, tensor
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, numpy_rng

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info", "WorkerInfo"]

_POLL_S = 0.25  # how often a waiting process checks that its peers are still alive
_JOIN_TIMEOUT_S = 5.0
_SKIPPED = object()


# ---- collation ---------------------------------------------------------------------------
def _rebuild(elem, items):
    """A container like ``elem`` holding ``items`` (key/value pairs for a mapping). Plain
    tuples become lists, as in PyTorch."""
    if isinstance(elem, Mapping):
        out = dict(items)
        try:
            return out if type(elem) is dict else type(elem)(out)
        except TypeError:
            return out
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*items)
    if isinstance(elem, tuple) or type(elem) is list:
        return list(items)
    try:
        return type(elem)(items)
    except TypeError:
        return list(items)


def _is_numeric_array(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind in "biuf"


def _stack(arrays):
    shapes = [a.shape for a in arrays]
    if any(s != shapes[0] for s in shapes):
        bad = next(i for i, s in enumerate(shapes) if s != shapes[0])
        raise RuntimeError(
            f"default_collate: stack expects each tensor to be equal size, but "
            f"got {list(shapes[0])} at entry 0 and {list(shapes[bad])} at entry "
            f"{bad}"
        )
    return get_array_module(arrays[0]).stack(arrays)


def default_collate(batch):
    """Merge a list of samples into a batch: tensors and numpy arrays are stacked along a new
    first dimension, Python floats become float64 tensors, ints int64 (bools bool) tensors,
    strings stay a list, and dicts, tuples, lists and namedtuples are collated field by field
    (a tuple of fields becomes a list, as in PyTorch)."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return Tensor(_stack([t.array for t in batch]))
    if _is_numeric_array(elem):
        return from_numpy(_stack([np.asarray(b) for b in batch]))
    if isinstance(elem, np.generic) and elem.dtype.kind in "biuf":
        return from_numpy(np.array(batch))
    if isinstance(elem, float):
        return tensor(batch, dtype="float64")
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, Mapping):
        return _rebuild(elem, [(k, default_collate([d[k] for d in batch])) for k in elem])
    if isinstance(elem, Sequence):
        if any(len(e) != len(elem) for e in batch):
            raise RuntimeError(
                "default_collate: each element in list of batch should be of equal size"
            )
        return _rebuild(elem, [default_collate(list(s)) for s in zip(*batch)])
    raise TypeError(
        f"default_collate: batch must contain tensors, numpy arrays, numbers, "
        f"dicts or lists; found {type(elem).__name__}"
        + (f" array of dtype {elem.dtype}" if isinstance(elem, np.ndarray) else "")
    )


def default_convert(data):
    """Turn numpy arrays and numbers of numeric dtype in ``data`` (recursively through dicts,
    lists, tuples) into tensors; what ``DataLoader(batch_size=None)`` applies to each sample."""
    if _is_numeric_array(data) or isinstance(data, np.generic) and data.dtype.kind in "biuf":
        return from_numpy(np.asarray(data))
    if isinstance(data, Mapping):
        return _rebuild(data, [(k, default_convert(v)) for k, v in data.items()])
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild(data, [default_convert(d) for d in data])
    return data


# ---- fetching samples ------------------------------------------------------------------
class _InfiniteConstantSampler(Sampler):
    """The 'indices' of an IterableDataset: ``None`` forever (batches are counted, not
    indexed)."""

    def __iter__(self):
        return itertools.repeat(None)


class _MapFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn

    def fetch(self, index):
        if self.auto_collation:
            return self.collate_fn([self.dataset[i] for i in index])
        return self.collate_fn(self.dataset[index])


class _IterableFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.iterator = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def fetch(self, index):
        """The next batch (``index`` is a list of ``batch_size`` Nones, or None); raises
        StopIteration at the end of the stream."""
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        items = list(itertools.islice(self.iterator, len(index)))
        if not items or self.drop_last and len(items) < len(index):
            self.ended = True
            raise StopIteration
        return self.collate_fn(items)


def _make_fetcher(dataset, auto_collation, collate_fn, drop_last):
    kind = _IterableFetcher if isinstance(dataset, IterableDataset) else _MapFetcher
    return kind(dataset, auto_collation, collate_fn, drop_last)


# ---- worker processes ------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker process."""

    id: int
    num_workers: int
    seed: int
    dataset: object


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process: its ``WorkerInfo`` (id, num_workers, seed, and its copy
    of the dataset). In the main process: None."""
    return _worker_info


class _WorkerError:
    """An exception raised in a worker, carried to the main process with its traceback."""

    def __init__(self, worker_id: int, exc: BaseException):
        self.exc_type = type(exc)
        self.message = (
            f"Caught {type(exc).__name__} in DataLoader worker process "
            f"{worker_id}.\nOriginal {traceback.format_exc()}"
        )

    def reraise(self):
        try:
            error = self.exc_type(self.message)
        except Exception:  # exception types whose constructor takes other arguments
            error = RuntimeError(self.message)
        try:
            raise error
        finally:  # no frame -> error -> traceback -> frame cycle: the iterator (and its
            del error  # workers) can go as soon as the caller drops the exception


class _WorkerDone:
    """Sent by a worker whose IterableDataset is exhausted for this epoch."""

    def __init__(self, worker_id: int):
        self.worker_id = worker_id


def _dumps(obj, worker_id: int) -> bytes:
    """Pickle in the worker, so that an unpicklable batch becomes an error the main process
    sees (mp.Queue would drop it in its feeder thread and leave the main process waiting)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        error = _WorkerError(worker_id, exc)
        try:
            return pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # the exception type itself cannot be pickled
            error.exc_type = RuntimeError
            return pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL)


def _seed_worker(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _random.default_generator.manual_seed(seed)  # not manual_seed(): no CUDA in a forked child


def _die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel SIGKILL this worker when its parent dies, wherever the worker
    is blocked (the loop's own parent check only runs between tasks). The kernel ties this to
    the thread that started the worker: start iterators from a thread that outlives them."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(0)


def _worker_loop(
    dataset,
    auto_collation,
    collate_fn,
    drop_last,
    tasks,
    result_queue,
    done_event,
    worker_id,
    num_workers,
    seed,
    init_fn,
):
    global _worker_info
    parent_pid = os.getppid()  # the main process (or the forkserver, which dies with it)
    _die_with_parent(parent_pid)
    try:
        _seed_worker(seed)
        _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
        init_error = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
        except Exception as exc:  # reported (with its traceback) for every task
            init_error = exc
        epoch, fetcher, ended = None, None, False
        while not done_event.is_set():
            if not tasks.poll(_POLL_S):
                if os.getppid() != parent_pid:  # orphaned: the main process died
                    break
                continue
            task = tasks.recv()
            if task is None or done_event.is_set():
                break
            task_epoch, idx, index = task
            if task_epoch != epoch:  # first task of an epoch: restart the stream
                epoch, fetcher, ended = task_epoch, None, False
            if ended:
                continue  # the main process skips this worker's remaining tasks
            try:
                if init_error is not None:
                    raise init_error
                if fetcher is None:
                    fetcher = _make_fetcher(dataset, auto_collation, collate_fn, drop_last)
                data = fetcher.fetch(index)
            except StopIteration:
                ended, data = True, _WorkerDone(worker_id)
            except Exception as exc:
                data = _WorkerError(worker_id, exc)
            result_queue.put((epoch, idx, _dumps(data, worker_id)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the main one handles it
        pass
    result_queue.cancel_join_thread()  # don't block exit on batches nobody will read
    result_queue.close()


# ---- iterators ---------------------------------------------------------------------------
class _BaseIter:
    def __init__(self, loader: DataLoader):
        self._loader = loader
        self._new_epoch()

    def _new_epoch(self):
        self._base_seed = int(numpy_rng(self._loader.generator).integers(2**62))
        self._indices = iter(self._loader._index_sampler)

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return len(self._loader)


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = _make_fetcher(
            loader.dataset, loader._auto_collation, loader.collate_fn, loader.drop_last
        )

    def __next__(self):
        return self._fetcher.fetch(next(self._indices))


class _MultiProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        ctx = loader.multiprocessing_context
        if ctx is None or isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        n = loader.num_workers
        self._owner_pid = os.getpid()
        self._closed = False
        self._epoch = 0
        self._result_queue = ctx.Queue()
        self._done = ctx.Event()
        self._task_pipes, self._workers = [], []
        for wid in range(n):
            reader, writer = ctx.Pipe(duplex=False)
            worker = ctx.Process(
                target=_worker_loop,
                daemon=True,
                args=(
                    loader.dataset,
                    loader._auto_collation,
                    loader.collate_fn,
                    loader.drop_last,
                    reader,
                    self._result_queue,
                    self._done,
                    wid,
                    n,
                    self._base_seed + wid,
                    loader.worker_init_fn,
                ),
            )
            worker.start()
            reader.close()  # so that writing to a dead worker fails instead of blocking
            self._task_pipes.append(writer)
            self._workers.append(worker)
        self._start_epoch()

    def _start_epoch(self):
        self._epoch += 1
        self._send_idx = self._rcvd_idx = 0
        self._task_worker = {}  # outstanding task -> worker id
        self._results = {}  # task -> payload received out of order
        self._active = [True] * len(self._workers)
        self._worker_cycle = itertools.cycle(range(len(self._workers)))
        for _ in range(self._loader.prefetch_factor * len(self._workers)):
            self._put_task()

    def _reset(self):
        """Start a new epoch with the same (persistent) workers; results still in flight from
        the previous epoch are recognised by their epoch number and dropped."""
        self._new_epoch()
        self._start_epoch()

    def _put_task(self):
        if not any(self._active):
            return
        try:
            index = next(self._indices)
        except StopIteration:
            return
        wid = next(w for w in self._worker_cycle if self._active[w])
        try:
            self._task_pipes[wid].send((self._epoch, self._send_idx, index))
        except OSError:  # the worker is gone
            self._check_workers()
            raise
        self._task_worker[self._send_idx] = wid
        self._send_idx += 1

    def __next__(self):
        while not self._closed:
            idx = self._rcvd_idx
            if idx >= self._send_idx:
                break
            if idx in self._results or not self._active[self._task_worker[idx]]:
                payload = self._results.pop(idx, _SKIPPED)
                del self._task_worker[idx]
                self._rcvd_idx += 1
                self._put_task()
                if payload is _SKIPPED:  # a task its exhausted worker will never answer
                    continue
                return self._unpack(payload)
            got, payload = self._receive()
            if isinstance(payload, _WorkerDone):
                self._active[payload.worker_id] = False
            else:
                self._results[got] = payload
        if not self._loader.persistent_workers:
            self._shutdown()
        raise StopIteration

    @staticmethod
    def _unpack(payload):
        if isinstance(payload, _WorkerError):
            payload.reraise()
        return payload

    def _receive(self):
        """The next (task, payload) of this epoch from the result queue, watching the workers
        and the loader's timeout."""
        timeout = self._loader.timeout
        deadline = time.monotonic() + timeout if timeout > 0 else None
        while True:
            wait = (
                _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic()))
            )
            try:
                epoch, idx, data = self._result_queue.get(timeout=wait)
            except queue.Empty:
                self._check_workers()
                if deadline is not None and time.monotonic() >= deadline:
                    self._shutdown(grace=0)  # a stuck worker won't finish: don't wait on it
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None
                continue
            if epoch == self._epoch:
                return idx, pickle.loads(data)

    def _check_workers(self):
        dead = [w for w in self._workers if not w.is_alive()]
        if dead:
            self._shutdown()
            detail = ", ".join(f"pid {w.pid} exit code {w.exitcode}" for w in dead)
            raise RuntimeError(
                f"DataLoader worker(s) exited unexpectedly ({detail}). A worker "
                f"killed by a signal (e.g. out of memory, -9) or calling "
                f"sys.exit() ends the epoch."
            )

    def _shutdown(self, grace: float = _JOIN_TIMEOUT_S):
        """Stop the workers: ask them to exit, give them ``grace`` seconds to finish their
        current sample, then terminate them."""
        if self._closed or os.getpid() != self._owner_pid:
            return
        self._closed = True
        self._done.set()
        for pipe in self._task_pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        deadline = time.monotonic() + grace
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.terminate()
                worker.join()
        for pipe in self._task_pipes:
            pipe.close()
        self._result_queue.cancel_join_thread()
        self._result_queue.close()

    def __del__(self):
        try:
            self._shutdown()
        except Exception:  # interpreter shutdown: multiprocessing ends daemonic workers itself
            pass


# ---- the loader ----------------------------------------------------------------------------
class DataLoader:
    """Iterate over ``dataset`` in batches, as ``torch.utils.data.DataLoader``.

    ``shuffle=True`` draws a new order each epoch from ``generator`` (default: the default
    stream, so ``distgrad.manual_seed`` fixes it). ``num_workers > 0`` loads batches in that
    many worker processes (see the module docstring); ``persistent_workers`` keeps them across
    epochs. ``batch_size=None`` turns off batching (each sample goes through
    ``default_convert``). ``pin_memory`` is accepted for compatibility and does nothing."""

    def __init__(
        self,
        dataset,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler=None,
        batch_sampler=None,
        num_workers: int = 0,
        collate_fn=None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn=None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor: int = 2,
        persistent_workers: bool = False,
    ):
        if num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to "
                "disable multiprocessing."
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if num_workers > 0 and (isinstance(prefetch_factor, bool) or prefetch_factor < 1):
            raise ValueError(
                f"prefetch_factor option should be a positive integer, got {prefetch_factor!r}"
            )
        if isinstance(dataset, IterableDataset):
            for name, value in (
                ("shuffle", shuffle or None),
                ("sampler", sampler),
                ("batch_sampler", batch_sampler),
            ):
                if value is not None:
                    raise ValueError(
                        f"DataLoader with IterableDataset: expected unspecified "
                        f"{name} option, but got {name}={value!r}"
                    )
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, "
                    "shuffle, sampler, and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError(
                "batch_size=None option disables auto-batching and is mutually "
                "exclusive with drop_last"
            )
        if sampler is None:
            if isinstance(dataset, IterableDataset):
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn or (
            default_collate if batch_sampler is not None else default_convert
        )
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self._iterator = None

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None or self._iterator._closed:
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator._reset()
        return self._iterator

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            n = len(self.dataset)  # type: ignore[arg-type]  # a sized IterableDataset
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self._index_sampler)
