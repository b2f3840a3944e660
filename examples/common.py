"""What the examples share: BLAS threads, progress bars, curve plots, a quick mode for tests.

Import it before ``distgrad`` (and so before numpy): the thread count of numpy's BLAS is read
from the environment when numpy loads.

- **Threads.** If none of ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
  is set (``distgrad-run`` sets them for every rank), the examples use one BLAS thread per
  process: their matrices are small (at most a few hundred columns), and a BLAS thread pool
  costs more in wake-ups than it gains. ``docs/THREADS.md`` has the measurements; set the
  variables yourself to override.
- **Quick mode** (``DISTGRAD_EXAMPLE_QUICK=1``, used by the tests): a few steps only, so that
  every example runs in its test in seconds.
- **Progress** through ``tqdm`` when it is installed (``pip install 'distgrad[examples]'``),
  on rank 0 only; **curves** through matplotlib into a PNG.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
if not any(os.environ.get(name) for name in THREAD_VARIABLES):
    for _name in THREAD_VARIABLES:
        os.environ[_name] = "1"


def quick() -> bool:
    """Whether to run a few steps only (``DISTGRAD_EXAMPLE_QUICK=1``)."""
    return os.environ.get("DISTGRAD_EXAMPLE_QUICK", "") not in ("", "0")


def progress(iterable=None, *, total=None, desc=None, enabled=True, unit="it"):
    """A tqdm progress bar over ``iterable`` (the iterable itself without tqdm or when not
    ``enabled``). ``bar.set_postfix``/``bar.update``/``bar.write`` work in both cases."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        return tqdm(
            iterable, total=total, desc=desc, disable=not enabled, unit=unit, dynamic_ncols=True
        )
    return _Plain(iterable, total)


class _Plain:
    """Stands in for tqdm when it is not installed: iterates, prints ``write`` lines."""

    def __init__(self, iterable, total):
        self.iterable, self.total, self.n = iterable, total, 0

    def __iter__(self):
        for item in self.iterable:
            self.n += 1
            yield item

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *args, **kwargs):
        pass

    def write(self, text):
        print(text, flush=True)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def say(bar, text):
    """Print a line without breaking the progress bar."""
    if hasattr(bar, "write"):
        bar.write(text)
    else:
        print(text, flush=True)


def save_curves(path, curves, *, xlabel, title, logy=False):
    """Plot ``{label: (xs, ys)}`` into the PNG ``path`` (one panel per label); return the path,
    or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'distgrad[examples]')")
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.2), squeeze=False)
    for ax, (label, (xs, ys)) in zip(axes[0], curves.items()):
        ax.plot(xs, ys, marker="." if len(xs) < 40 else None)
        ax.set(xlabel=xlabel, ylabel=label)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
