"""``SyncBatchNorm``: batch normalisation with statistics over the whole global batch.

Forward all-gathers each rank's per-channel count, mean and sum of squared deviations and
combines them (Chan's parallel formula: exact and free of the cancellation of sum/sum-of-squares
at large means); backward all-reduces the two per-channel gradient sums that the input gradient
needs. The gradients of weight and bias stay local: ``DataParallel`` averages them like any
other parameter's. Outside training, or in a world (or group) of one, it is a plain
``BatchNorm``. ``process_group`` restricts the statistics to a group's ranks (every member
must run the layer, others may not use it).
"""

from __future__ import annotations

from typing import Any

from ..autograd import Op, Tensor, no_grad
from ..nn.module import Module
from ..nn.modules.normalization import _BatchNorm
from .communicator import Array, Communicator, ReduceOp
from .groups import ProcessGroup, resolve
from .process_group import is_initialized
from .process_group import rank as world_rank

__all__ = ["SyncBatchNorm"]


class _SyncBatchNormFunction(Op):
    once_differentiable = True

    @staticmethod
    def forward(  # arrays: numpy or cupy (xp)
        ctx: Any,
        x: Any,
        weight: Any,
        bias: Any,
        running_mean: Any,
        running_var: Any,
        momentum: float,
        eps: float,
        comm: Communicator,
    ) -> Any:
        xp = ctx.xp
        c = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        pshape = (1, c) + (1,) * (x.ndim - 2)
        n_local = x.size // c
        local_mean = x.mean(axis=axes, keepdims=True)
        xmu = x - local_mean
        stats = xp.concatenate(
            [local_mean.reshape(c), (xmu * xmu).sum(axis=axes), xp.full(1, n_local, x.dtype)]
        )
        every = xp.empty((comm.world_size, 2 * c + 1), x.dtype)
        comm.allgather(stats, every, async_op=False)
        counts, means, m2 = every[:, -1:], every[:, :c], every[:, c : 2 * c]
        n = counts.sum()
        if n <= 1:
            raise ValueError(
                f"SyncBatchNorm: expected more than 1 value per channel when "
                f"training, got {int(n)} over all ranks"
            )
        mean = (counts * means).sum(axis=0) / n
        var = (m2.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)) / n
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * n / (n - 1)) * var.astype(running_var.dtype)
        invstd = (1.0 / xp.sqrt(var + eps)).reshape(pshape)
        xhat = (x - mean.reshape(pshape)) * invstd
        y = xhat if weight is None else xhat * weight.reshape(pshape)
        if bias is not None:
            y = y + bias.reshape(pshape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.axes, ctx.pshape, ctx.count, ctx.comm = axes, pshape, n, comm
        return y

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, ...]:
        xhat, invstd, weight = ctx.saved_tensors
        xp, axes, pshape = ctx.xp, ctx.axes, ctx.pshape
        sum_g = grad.sum(axis=axes)
        sum_gx = (grad * xhat).sum(axis=axes)
        gw = sum_gx if ctx.needs_input_grad[1] else None
        gb = sum_g if ctx.needs_input_grad[2] else None
        gx = None
        if ctx.needs_input_grad[0]:
            w = 1 if weight is None else weight
            sums = xp.concatenate([w * sum_g, w * sum_gx])  # of d loss / d xhat, over ranks
            ctx.comm.allreduce(sums, ReduceOp.SUM, async_op=False)
            c = sum_g.size
            gxhat = grad if weight is None else grad * weight.reshape(pshape)
            gx = (
                gxhat
                - (sums[:c] / ctx.count).reshape(pshape)
                - xhat * (sums[c:] / ctx.count).reshape(pshape)
            ) * invstd
        return gx, gw, gb, None, None, None, None, None


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation over ``(N, C, *)`` input whose statistics cover the batches of all
    ranks (PyTorch's ``nn.SyncBatchNorm``); ``convert_sync_batchnorm`` swaps it in for every
    ``BatchNorm`` of a model."""

    _expected_dims = (2, 3, 4, 5)

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: ProcessGroup | None = None,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _communicator(self, array: Array) -> Communicator | None:
        if not is_initialized():
            return None
        group = resolve(self.process_group)
        if not group.is_member:
            raise RuntimeError(
                f"SyncBatchNorm: rank {world_rank()} is not a member of its process_group "
                f"(ranks {list(group.ranks)}), so it cannot take part in its statistics"
            )
        return group.communicator_for(array)

    def forward(self, input: Tensor) -> Tensor:
        comm = self._communicator(input.array) if self.training else None
        if not self.training or comm is None or comm.world_size == 1:
            return super().forward(input)
        self._check_input(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        running = (None, None)
        if self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.item())
            running = (self.running_mean, self.running_var)
        y = _SyncBatchNormFunction.apply(
            input, self.weight, self.bias, *running, momentum, self.eps, comm
        )
        for t in running:
            if t is not None:
                t.bump_version()
        return y

    @classmethod
    def convert_sync_batchnorm(
        cls, module: Module, process_group: ProcessGroup | None = None
    ) -> Module:
        """``module`` with every ``BatchNorm*d`` replaced by a ``SyncBatchNorm`` sharing its
        parameters and buffers (returns the new module when ``module`` itself is one).
        ``process_group``: the group the new layers synchronise over (None: the world)."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            out = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group,
            )
            for name in ("weight", "bias"):
                if module._parameters.get(name) is not None:
                    setattr(out, name, module._parameters[name])
            for name, buffer in module._buffers.items():
                out._buffers[name] = buffer
            out.training = module.training
        for name, child in module.named_children():
            out._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return out
