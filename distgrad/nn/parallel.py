"""``distgrad.nn.parallel``: PyTorch's single-process multi-GPU helpers, which distgrad does
not implement (it replicates across processes: ``distgrad.distributed.DataParallel``).

``data_parallel(module, inputs)`` with at most one device runs ``module(inputs)``; asking for
several devices raises, naming the process-based replacement."""

from __future__ import annotations

__all__ = ["data_parallel"]


def data_parallel(module, inputs, device_ids=None, output_device=None, dim=0, module_kwargs=None):
    """``module(inputs)`` when ``device_ids`` names at most one device; more raise."""
    ids = list(device_ids) if device_ids is not None else []
    if len(ids) > 1:
        raise NotImplementedError(
            f"nn.parallel.data_parallel over {len(ids)} devices: distgrad replicates a model "
            f"across processes, not threads; launch one process per GPU with distgrad-run and "
            f"wrap the model in distgrad.distributed.DataParallel"
        )
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    return module(*inputs, **(module_kwargs or {}))
