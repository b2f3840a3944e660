"""``ResumableLoader``: a DataLoader that can be checkpointed in the middle of an epoch.

At the start of each epoch the wrapper records the epoch's whole order (the batches of indices
its sampler or batch sampler produces; drawing them consumes the random streams exactly as an
unwrapped loader does) and the state of the loader's generator just before the epoch began. It
counts the batches it has handed to the training loop (not the ones prefetched by workers).
``state_dict()`` holds those three; after ``load_state_dict()`` the next ``iter()`` replays the
rest of the recorded order, fetching no skipped sample and drawing no random number, so the
batches and every random stream continue exactly as in an uninterrupted run. Worker processes
are seeded from the same base seed as in the interrupted epoch (their streams restart at the
resumed batch).

Semantics follow torchdata's ``StatefulDataLoader``: a state saved during an epoch resumes that
epoch; one saved after an epoch ended (the iterator exhausted) starts the next epoch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..data.dataset import IterableDataset
from ..data.distributed import DistributedSampler
from ..data.sampler import numpy_rng

__all__ = ["ResumableLoader"]


class _Recorder:
    """Stands in for the loader's index sampler: materializes (or replays) each epoch's order."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.order: list[Any] | None = None  # this epoch's batches (lists of indices) or indices
        # (order, start) to hand out instead of drawing a new one
        self.replay: tuple[list[Any], int] | None = None

    def __iter__(self) -> Iterator[Any]:
        if self.replay is not None:
            (self.order, start), self.replay = self.replay, None
            return iter(self.order[start:])
        self.order = list(self.inner)
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str) -> Any:  # e.g. batch_size, drop_last, sampler
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _pack(order: list[Any], batched: bool) -> dict[str, np.ndarray | None]:
    if not batched:
        return {"indices": np.asarray(order, np.int64), "sizes": None}
    sizes = np.fromiter(map(len, order), np.int64, len(order))
    flat = [i for batch in order for i in batch]
    return {"indices": np.asarray(flat, np.int64), "sizes": sizes}


def _unpack(packed: dict[str, Any]) -> list[Any]:
    indices = packed["indices"].tolist()
    if packed["sizes"] is None:
        return indices
    ends = np.cumsum(packed["sizes"]).tolist()
    return [indices[a:b] for a, b in zip([0] + ends[:-1], ends)]


class ResumableLoader:
    """Wrap ``loader`` (a map-style ``DataLoader``) so that checkpoints can save and restore its
    position within an epoch; iterate over the wrapper instead of the loader.

    ``state_dict()`` / ``load_state_dict()`` as torchdata's ``StatefulDataLoader``; other
    attributes (``dataset``, ``sampler``, ``batch_size``...) are the loader's. The wrapper takes
    over the loader's index sampler, so keep using the same wrapper. ``batches_done`` counts the
    batches handed out in the current epoch."""

    def __init__(self, loader: Any):
        if isinstance(getattr(loader, "dataset", None), IterableDataset):
            raise TypeError(
                "ResumableLoader: a DataLoader over an IterableDataset cannot be "
                "resumed mid-epoch (its samples have no indices); make the dataset "
                "resumable itself, or checkpoint at epoch boundaries"
            )
        if not hasattr(loader, "_index_sampler"):
            raise TypeError(
                f"ResumableLoader wraps a distgrad.data.DataLoader, got {type(loader).__name__}"
            )
        self.loader = loader
        self._batched = loader.batch_sampler is not None
        attr = "batch_sampler" if self._batched else "sampler"
        self._recorder = _Recorder(getattr(loader, attr))
        setattr(loader, attr, self._recorder)
        self.batches_done = 0
        # the loader generator's state before the epoch's draws
        self._epoch_rng: Mapping[str, Any] | None = None
        self._active = False
        self._resume: dict[str, Any] | None = None
        self._run = 0  # which iteration the counters belong to
        self._base_index = 0  # a DistributedSampler's global start index of this pass

    def _rng(self) -> np.random.Generator:
        return numpy_rng(self.loader.generator)

    def __iter__(self) -> Iterator[Any]:
        self._run += 1
        run, resume, self._resume = self._run, self._resume, None
        rng = self._rng()
        sampler = self._sampler()
        if resume is None:
            self._epoch_rng = rng.bit_generator.state
            self.batches_done = 0
            self._base_index = getattr(sampler, "start_index", 0)
            iterator = iter(self.loader)
        elif "global_index" in resume:  # the sampler restarts at the global sample index
            now, rng.bit_generator.state = rng.bit_generator.state, resume["epoch_rng"]
            self._epoch_rng, self.batches_done = resume["epoch_rng"], 0
            self._base_index = sampler.start_index = resume["global_index"]
            iterator = iter(self.loader)
            self._rng().bit_generator.state = now
        else:  # the epoch's draws were made before the checkpoint: redo them, then undo them
            now, rng.bit_generator.state = rng.bit_generator.state, resume["epoch_rng"]
            self._epoch_rng, self.batches_done = resume["epoch_rng"], resume["batches_done"]
            self._recorder.replay = (_unpack(resume["order"]), self.batches_done)
            iterator = iter(self.loader)
            self._rng().bit_generator.state = now
        self._active = True
        return self._batches(iterator, run)

    def _batches(self, iterator: Iterable[Any], run: int) -> Iterator[Any]:
        for batch in iterator:
            if run == self._run:
                self.batches_done += 1
            yield batch
        if run == self._run:
            self._active = False

    def __len__(self) -> int:
        return len(self.loader)

    def _sampler(self) -> Any:
        """The loader's own sampler (e.g. a DistributedSampler)."""
        sampler = self.loader.sampler
        return sampler.inner if isinstance(sampler, _Recorder) else sampler

    def __getattr__(
        self, name: str
    ) -> Any:  # the loader's attributes: dataset, sampler, batch_size...
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def state_dict(self) -> dict[str, Any]:
        """The position: in an epoch, its order, the batches handed out and the generator
        state it began with; between epochs, nothing to replay."""
        state: dict[str, Any] = {
            "active": self._active,
            "sampler_epoch": getattr(self._sampler(), "epoch", None),
            "batches_done": self.batches_done if self._active else 0,
        }
        if self._active:
            order = self._recorder.order
            if order is None:  # (recorded when the epoch's iteration began)
                raise RuntimeError("ResumableLoader.state_dict: the epoch's order was not recorded")
            sampler = self._sampler()
            if isinstance(sampler, DistributedSampler):
                # a global sample index: independent of the number of ranks
                done = order[: self.batches_done]
                samples = sum(map(len, done)) if self._batched else len(done)
                state["global_index"] = self._base_index + samples * sampler.num_replicas
            else:
                state["order"] = _pack(order, self._batched)
            state["epoch_rng"] = self._epoch_rng
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next ``iter()`` resume the epoch ``state`` was saved in (or, for a state
        saved between epochs, start the next one)."""
        order = state.get("order")
        if state["active"] and "global_index" not in state:
            if order is None:
                raise ValueError(
                    "ResumableLoader.load_state_dict: the state was saved during an epoch but "
                    "holds neither 'order' nor 'global_index'"
                )
            n = len(_unpack(order))
            if not 0 <= state["batches_done"] <= n:
                raise ValueError(
                    f"ResumableLoader.load_state_dict: batches_done "
                    f"{state['batches_done']} is outside the epoch's {n} batches"
                )
        sampler = self._sampler()
        if state.get("sampler_epoch") is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(state["sampler_epoch"])
        self._resume = dict(state) if state["active"] else None
        self._active, self.batches_done = False, 0
