"""``parameters_to_vector`` / ``vector_to_parameters``."""

from __future__ import annotations

from ...autograd import no_grad

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    from ... import ops

    params = list(parameters)
    if len({p.device for p in params}) > 1:
        raise TypeError(
            "parameters_to_vector: found parameters on different devices: "
            + ", ".join(sorted({str(p.device) for p in params}))
        )
    return ops.cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec, parameters) -> None:
    """Copy consecutive slices of ``vec`` into the parameters (in place)."""
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.numel() != total:
        raise ValueError(
            f"vector_to_parameters: expected a 1-D vector of {total} elements "
            f"(the parameters' total), got shape {list(vec.shape)}"
        )
    offset = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec[offset : offset + n].reshape(p.shape))
            offset += n
