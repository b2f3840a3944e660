"""Each rank of ``distgrad.multiprocessing.spawn``: ``python -m distgrad._spawn_child PAYLOAD``
(run under distgrad-run's per-rank wrapper) finds ``fn`` and calls ``fn(rank, *args)``."""

from __future__ import annotations

import importlib
import os
import pickle
import runpy
import sys


def _find(module: str, name: str, main: str | None):
    if main is not None:  # the parent's script: run it again, not as __main__
        sys.path.insert(0, os.path.dirname(main))
        namespace = runpy.run_path(main, run_name="__mp_main__")
        obj = namespace[name.split(".")[0]]
        rest = name.split(".")[1:]
    else:
        obj, rest = importlib.import_module(module), name.split(".")
    for part in rest:
        obj = getattr(obj, part)
    return obj


def main(path: str) -> None:
    """Load the payload and call ``fn(rank, *args)``."""
    with open(path, "rb") as f:
        payload = pickle.load(f)
    fn = _find(payload["module"], payload["name"], payload["main"])
    fn(int(os.environ.get("RANK", "0")), *payload["args"])


if __name__ == "__main__":
    main(sys.argv[1])
