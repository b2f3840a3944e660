"""Data loading, as ``torch.utils.data``: datasets, samplers, ``DataLoader`` (optionally with
worker processes) and ``default_collate``; ``distgrad.data.datasets`` loads small real data sets
that ship inside installed packages.

``DistributedSampler`` lives in ``distgrad/data/distributed.py`` (written with the distributed
layer); it is re-exported here lazily, so that importing ``distgrad.data`` never imports the
distributed layer."""

from . import datasets
from .dataloader import DataLoader, WorkerInfo, default_collate, default_convert, get_worker_info
from .dataset import ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler

__all__ = [
    "Dataset",
    "IterableDataset",
    "TensorDataset",
    "ConcatDataset",
    "Subset",
    "random_split",
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "BatchSampler",
    "DataLoader",
    "default_collate",
    "default_convert",
    "get_worker_info",
    "WorkerInfo",
    "datasets",
]


def __getattr__(name):
    if name == "DistributedSampler":
        try:
            from .distributed import DistributedSampler
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.distributed":
                raise
            raise AttributeError(
                "distgrad.data.DistributedSampler is not available: "
                "distgrad/data/distributed.py is missing"
            ) from None
        return DistributedSampler
    raise AttributeError(f"module 'distgrad.data' has no attribute {name!r}")
