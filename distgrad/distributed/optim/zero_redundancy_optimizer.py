"""``ZeroRedundancyOptimizer`` (ZeRO stage 1): each rank keeps the optimizer state of its shard
of the parameters only.

Every parameter is cut on dim 0 into ``world_size`` row blocks of ``ceil(rows / world_size)``
rows (the last ones shorter or empty; the layout of ``reducer.ShardLayout``, the same as the
sharded modes use), unlike torch's, which hands out whole parameters: with rows the shards are
balanced whatever the parameter sizes. Rank r's local optimizer (any ``optimizer_class``,
unchanged) steps views of its rows, reading the rows of ``.grad``; then one all-gather per dtype
brings every rank's updated rows to every rank. With ``DistributedDataParallel`` underneath the
gradients are allreduced as usual, so per step the wire carries 2 Psi (allreduce) + Psi
(all-gather) bytes, as torch's ZeroRedundancyOptimizer. Passing the DDP module as ``ddp=``
switches its buckets to reduce-scatter each rank's rows to it (Psi) before the all-gather
(Psi): 2 Psi, the ZeRO paper's stage-1 traffic (opt-in, see the class docstring).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ...autograd import Tensor
from ...nn.parameter import Parameter
from ...optim.optimizer import Optimizer
from ..communicator import Array, Communicator, ReduceOp
from ..data_parallel import DistributedDataParallel, _resolve_communicator
from ..groups import ProcessGroup
from ..reducer import ShardBucket, ShardLayout
from ..sharded_tensor import ShardedTensor

__all__ = ["ZeroRedundancyOptimizer"]


class _Slice:
    """One parameter's rows owned by this rank: ``view`` (a leaf the local optimizer steps)."""

    def __init__(self, param: Tensor, layout: ShardLayout, index: int, rank: int):
        self.param, self.index = param, index
        self.start, self.stop = layout.owned_rows(index, rank)
        rows = param.array.reshape(layout.dim0[index], *param.array.shape[1:])
        self.view = Parameter(rows[self.start : self.stop]) if self.stop > self.start else None

    def grad_view(self) -> Tensor | None:
        grad = self.param.grad
        if grad is None:
            return None
        rows = grad.array.reshape((-1, *self.param.array.shape[1:]))
        return Tensor(rows[self.start : self.stop])


class ZeroRedundancyOptimizer(Optimizer):
    """Wrap ``optimizer_class(params, **defaults)`` so each rank holds the optimizer state of
    its rows of every parameter only (ZeRO-1; see the module docstring), as
    ``torch.distributed.optim.ZeroRedundancyOptimizer``.

    ``param_groups`` are the full groups (learning-rate schedulers work on them as usual);
    ``step()`` copies their hyperparameters to the local optimizer, steps it, and all-gathers
    the updated rows, so every rank ends with the same parameters. ``process_group``: None for
    the world, a group or a communicator. ``parameters_as_bucket_view`` and
    ``overlap_with_ddp`` are accepted for torch compatibility; ``overlap_with_ddp=True`` is not
    supported (raises).

    ``ddp`` (distgrad's own, keyword only): the ``DistributedDataParallel`` module whose
    parameters these are. Its buckets then reduce-scatter instead of allreducing, so each rank
    receives only the summed rows it steps (2 Psi per step instead of 3 Psi). Not the default
    because it changes what backward leaves behind, which torch's ZeRO over DDP (allreduce)
    does not: the parameters' ``.grad`` stay None (the reduced rows are the gradients of the
    optimizer's local views), so code that reads or clips ``param.grad`` must use
    ``zero.clip_grad_norm_`` instead of ``nn.utils.clip_grad_norm_``, and a parameter no rank
    used gets a zero gradient rather than none (reduce-scatter carries no 'used' flags, as in
    ``fully_shard``). It needs every trainable parameter of the DDP module in this optimizer,
    over the same ranks.

    State: ``consolidate_state_dict(to=0)`` (a collective) gathers the full state on rank
    ``to``, whose ``state_dict()`` then returns it in the wrapped optimizer's format (loadable by
    ``load_state_dict`` on any world size, or by the plain optimizer). ``sharded_state_dict()``
    is this rank's part (no communication); ``load_sharded_state_dict`` takes it back on the same
    rank of the same world size.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[tuple[str, Tensor]] | Iterable[dict[str, Any]],
        optimizer_class: type[Optimizer],
        process_group: ProcessGroup | Communicator | None = None,
        parameters_as_bucket_view: bool = False,
        overlap_with_ddp: bool = False,
        *,
        ddp: DistributedDataParallel | None = None,
        **defaults: Any,
    ) -> None:
        if overlap_with_ddp:
            raise NotImplementedError(
                "ZeroRedundancyOptimizer: overlap_with_ddp=True is not supported in distgrad"
            )
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(
                f"ZeroRedundancyOptimizer: optimizer_class must be an Optimizer subclass, got "
                f"{optimizer_class!r}"
            )
        super().__init__(params, defaults)
        self.optimizer_class = optimizer_class
        self.parameters_as_bucket_view = parameters_as_bucket_view
        first = self.param_groups[0]["params"][0]

        class _Holder:  # _resolve_communicator looks at a module's first parameter
            def parameters(self) -> Iterator[Tensor]:
                return iter([first])

        self.comm = _resolve_communicator(process_group, _Holder())
        self.rank, self.world_size = self.comm.rank, self.comm.world_size
        self._consolidated: dict | None = None
        self._build()
        self._ddp: DistributedDataParallel | None = None
        if ddp is not None:
            self._reduce_scatter_from(ddp)

    def _build(self) -> None:
        everything = [p for g in self.param_groups for p in g["params"]]
        by_dtype: dict[np.dtype, list[Tensor]] = {}
        for p in everything:
            by_dtype.setdefault(p.array.dtype, []).append(p)
        self._layouts: dict[np.dtype, tuple[ShardLayout, list[Tensor]]] = {
            dtype: (ShardLayout([p.shape for p in ps], self.world_size), ps)
            for dtype, ps in by_dtype.items()
        }
        where: dict[int, _Slice] = {}
        for layout, ps in self._layouts.values():
            for i, p in enumerate(ps):
                where[id(p)] = _Slice(p, layout, i, self.rank)
        self._slices = [where[id(p)] for p in everything]
        # (index into param_groups, local group dict)
        self._local_groups: list[tuple[int, dict[str, Any]]] = []
        for gi, group in enumerate(self.param_groups):
            views = [where[id(p)].view for p in group["params"] if where[id(p)].view is not None]
            if views:
                local = {k: v for k, v in group.items() if k != "params"}
                local["params"] = views
                self._local_groups.append((gi, local))
        self.optim: Optimizer | None = (
            self.optimizer_class([g for _, g in self._local_groups], **self.defaults)
            if self._local_groups
            else None
        )

    # ---- the step ----------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Step this rank's rows with the local optimizer, then all-gather every rank's rows."""
        loss = closure() if closure is not None else None
        if self.optim is not None:
            for (gi, _), local in zip(self._local_groups, self.optim.param_groups):
                for key, value in self.param_groups[gi].items():
                    if key != "params":
                        local[key] = value
            if self._ddp is None:  # with ddp= the reducer has set the views' gradients
                for s in self._slices:
                    if s.view is not None:
                        s.view.grad = s.grad_view()
            self.optim.step()
        self._all_gather()
        return loss

    def _all_gather(self) -> None:
        """Every rank's rows of every parameter to every rank (one all-gather per dtype)."""
        for layout, params in self._layouts.values():
            xp = params[0].device.xp
            send = xp.zeros(layout.block, params[0].array.dtype)
            recv = xp.empty((self.world_size, layout.block), send.dtype)
            for i, p in enumerate(params):
                rows = p.array.reshape(layout.dim0[i], layout.inner[i])
                start, stop = layout.owned_rows(i, self.rank)
                mine = send[layout.offsets[i] : layout.offsets[i + 1]]
                mine[: (stop - start) * layout.inner[i]] = rows[start:stop].reshape(-1)
            self.comm.allgather(send, recv, async_op=False)
            for i, p in enumerate(params):
                layout.gather_from(recv, i, p.array)
                p.bump_version()

    # ---- ZeRO-1 at 2 Psi: reduce-scatter from DDP --------------------------------------------
    def _reduce_scatter_from(self, ddp: DistributedDataParallel) -> None:
        """Rebuild ``ddp``'s buckets (same cut) as reduce-scatter buckets whose reduced rows
        become the gradients of this optimizer's local views."""
        reducer = getattr(ddp, "reducer", None)
        if not hasattr(ddp, "_cut") or not hasattr(ddp, "module"):
            raise TypeError(
                f"ZeroRedundancyOptimizer: ddp must be a DistributedDataParallel module, got "
                f"{type(ddp).__name__}"
            )
        if (ddp.comm.world_size, ddp.comm.rank) != (self.world_size, self.rank):
            raise ValueError(
                f"ZeroRedundancyOptimizer: ddp runs on {ddp.comm.world_size} ranks (this is rank "
                f"{ddp.comm.rank}), the optimizer on {self.world_size} (rank {self.rank}); "
                f"use the same process group"
            )
        if reducer is None:  # a world of one: nothing to reduce
            return
        mine = {id(s.param): s for s in self._slices}
        missing = [n for n, p in reducer.named if id(p) not in mine]
        if missing:
            raise ValueError(
                f"ZeroRedundancyOptimizer(ddp=...): DDP parameters {missing[:5]} are not in "
                f"this optimizer; every trainable parameter of the DDP module must be"
            )
        plain_cut = ddp._cut

        def cut(named: list[tuple[str, Tensor]]) -> list[ShardBucket]:
            buckets = []
            for b in plain_cut(named):
                layout = ShardLayout([tuple(p.shape) for p in b.params], self.world_size)
                slices = [mine[id(p)] for p in b.params]
                write = functools.partial(_write_rows, layout, slices)
                buckets.append(ShardBucket(b.params, b.names, layout, self.rank, write))
            return buckets

        # DDP's cut replaced by this reduce-scatter one (rebuild_buckets keeps the form)
        ddp._cut = cut  # type: ignore[method-assign, assignment]
        reducer.detach()
        reducer.plan(cut(reducer.named), ddp._contract())
        reducer.attach()
        self._ddp = ddp

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0) -> Tensor:
        """Clip the gradients of this optimizer's rows to a global norm (a collective: the
        ranks combine their rows' partial norms) and return the norm, as
        ``nn.utils.clip_grad_norm_`` over the full gradients would. Needed with ``ddp=``."""
        from ...nn.utils.clip_grad import _partial

        norm_type = float(norm_type)
        grads = [s.view.grad for s in self._slices if s.view is not None]
        grads = [g for g in grads if g is not None]
        if self._ddp is None:
            grads = [s.grad_view() for s in self._slices if s.view is not None]
            grads = [g for g in grads if g is not None]
        buf = np.array([_partial(grads, norm_type) if grads else 0.0], np.float64)
        op = ReduceOp.MAX if np.isinf(norm_type) else ReduceOp.SUM
        self.comm.allreduce(buf, op, async_op=False)
        total = float(buf[0]) if np.isinf(norm_type) else float(buf[0]) ** (1.0 / norm_type)
        coef = float(max_norm) / (total + 1e-6)
        if coef < 1.0:
            for g in grads:
                g.array[...] *= coef
                g.bump_version()
        return Tensor(np.array(total))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of the full parameters (and of the local views)."""
        super().zero_grad(set_to_none)
        for s in self._slices:
            if s.view is not None:
                s.view.grad = None

    # ---- state -------------------------------------------------------------------------------
    def local_shards(self) -> list[tuple[Tensor, int, int, Parameter | None]]:
        """``(param, start, stop, view)`` for every parameter in group order: the dim-0 rows
        ``[start, stop)`` this rank's local optimizer (``self.optim``) steps through ``view``
        (None when it owns no row)."""
        return [(s.param, s.start, s.stop, s.view) for s in self._slices]

    def sharded_state_dict(self) -> dict[str, Any]:
        """This rank's state (no communication): per global parameter index, the local
        optimizer's state with every tensor as a ``ShardedTensor`` (``full_shape`` the
        parameter's, ``rows`` this rank's, ``full_tensor()`` a collective), plus the layout."""
        local = self.optim.state_dict() if self.optim is not None else {"state": {}}
        owned = [i for i, s in enumerate(self._slices) if s.view is not None]
        state = {}
        for k, value in local["state"].items():
            i = owned[k]
            state[i] = {
                key: self._sharded(i, v) if isinstance(v, Tensor) and key != "step" else v
                for key, v in value.items()
            }
        rows = {i: (self._slices[i].start, self._slices[i].stop) for i in owned}
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "rows": rows,
            "state": state,
            "param_groups": self._full_groups(),
        }

    def _sharded(self, i: int, value: Tensor) -> ShardedTensor:
        s = self._slices[i]
        piece = value.array.reshape(s.stop - s.start, *s.param.shape[1:])
        return ShardedTensor(piece, tuple(s.param.shape), (s.start, s.stop), self.comm)

    def load_sharded_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a sharded state: ``sharded_state_dict()`` of this rank, or, from a run of any
        world size, state whose tensors are ``ShardedTensor`` pieces covering this rank's rows or whole
        tensors of the parameter's shape (what a resharding checkpoint assembles). Everything
        is checked before anything is loaded."""
        same = (state_dict.get("rank"), state_dict.get("world_size")) == (
            self.rank,
            self.world_size,
        )
        owned = [i for i, s in enumerate(self._slices) if s.view is not None]
        state = {}
        for i, saved in state_dict["state"].items():
            if self._slices[i].view is None:
                continue
            state[i] = {
                key: self._rows_of(i, key, v, same)
                if isinstance(v, Tensor) and key != "step"
                else v
                for key, v in saved.items()
            }
        self._load_groups(state_dict["param_groups"])
        if self.optim is not None:
            position = {i: k for k, i in enumerate(owned)}
            local = self.optim.state_dict()
            local["state"] = {position[i]: v for i, v in state.items()}
            self.optim.load_state_dict(local)

    def _rows_of(self, i: int, key: str, value: Tensor, same_layout: bool) -> Tensor:
        """This rank's rows of parameter i's state tensor ``value`` (a copy)."""
        s = self._slices[i]
        view = s.view
        if view is None:
            raise ValueError(f"parameter {i} has no rows on rank {self.rank}: no state to load")
        rows, full_shape = (s.start, s.stop), tuple(s.param.shape)
        if isinstance(value, ShardedTensor):
            if value.full_shape != full_shape or not value.covers(rows):
                raise ValueError(
                    f"ZeroRedundancyOptimizer.load_sharded_state_dict: state {key!r} of "
                    f"parameter {i} holds rows {list(value.rows)} of shape "
                    f"{list(value.full_shape)}; rank {self.rank} needs rows {list(rows)} of "
                    f"{list(full_shape)}"
                )
            return Tensor(value.take(rows).copy())
        if tuple(value.shape) == full_shape:
            d0 = full_shape[0] if full_shape else 1
            piece = value.array.reshape(d0, -1)[s.start : s.stop]
            return Tensor(piece.reshape(view.shape).copy())
        if same_layout and tuple(value.shape) == tuple(view.shape):
            return Tensor(value.array.copy())
        raise ValueError(
            f"ZeroRedundancyOptimizer.load_sharded_state_dict: state {key!r} of parameter {i} "
            f"has shape {list(value.shape)}; expected a ShardedTensor of rows {list(rows)} or "
            f"the whole {list(full_shape)}"
        )

    def shard_rows(self, index: int) -> tuple[int, int]:
        """``(start, stop)``: the rows of dim 0 of parameter ``index`` (flat order of
        ``param_groups``, as the state dict's indices) whose optimizer state this rank holds."""
        s = self._slices[index]
        return s.start, s.stop

    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gather every rank's optimizer state on rank ``to`` (every rank must call it); then
        ``state_dict()`` on ``to`` returns the full state. Objects travel pickled (they come
        from this job's own ranks)."""
        if not 0 <= to < self.world_size:
            raise ValueError(f"consolidate_state_dict: to={to} is not a rank of {self.world_size}")
        mine = self.sharded_state_dict()
        pieces = self.comm.allgather_object(_to_host(mine)) if self.world_size > 1 else [mine]
        self._consolidated = None
        if self.rank != to:
            return
        state = {}
        for i, s in enumerate(self._slices):
            parts = [(p["rows"][i], p["state"][i]) for p in pieces if i in p["state"]]
            if not parts:
                continue
            merged = {}
            for key, value in parts[0][1].items():
                if isinstance(value, Tensor) and key != "step":
                    xp = s.param.device.xp
                    whole = xp.concatenate([xp.asarray(part[key].array) for _, part in parts])
                    merged[key] = Tensor(whole.reshape(s.param.shape))
                else:
                    merged[key] = value
            state[i] = merged
        self._consolidated = {"state": state, "param_groups": self._full_groups()}

    def state_dict(self) -> dict[str, Any]:
        """The full state gathered by ``consolidate_state_dict`` (on its ``to`` rank only)."""
        if self._consolidated is None:
            raise RuntimeError(
                "Optimizer state has not been consolidated on this rank. Please call "
                "`consolidate_state_dict(to=...)` on all ranks beforehand if you meant to "
                "save the global state."
            )
        return self._consolidated

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a full state (``state_dict()`` of a consolidated run, any world size, or of the
        plain wrapped optimizer): each rank keeps its rows."""
        self._load_groups(state_dict["param_groups"])
        if self.optim is None:
            return
        local_state, k = {}, 0
        for i, s in enumerate(self._slices):
            if s.view is None:
                continue
            full = state_dict["state"].get(i)
            if full is not None:
                rows = {}
                for key, value in full.items():
                    if isinstance(value, Tensor) and key != "step":
                        d0 = s.param.array.shape[0] if s.param.array.ndim else 1
                        array = value.array.reshape(d0, -1)
                        rows[key] = Tensor(array[s.start : s.stop].reshape(s.view.shape).copy())
                    else:
                        rows[key] = value
                local_state[k] = rows
            k += 1
        local = self.optim.state_dict()
        local["state"] = local_state
        self.optim.load_state_dict(local)

    def _full_groups(self) -> list[dict[str, Any]]:
        index, groups = 0, []
        for g in self.param_groups:
            groups.append(
                {
                    **{k: v for k, v in g.items() if k != "params"},
                    "params": list(range(index, index + len(g["params"]))),
                }
            )
            index += len(g["params"])
        return groups

    def _load_groups(self, saved: list[dict[str, Any]]) -> None:
        if len(saved) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved)} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        for group, s in zip(self.param_groups, saved):
            for key, value in s.items():
                if key != "params":
                    group[key] = value


def _write_rows(layout: ShardLayout, slices: list[_Slice], recv: Array) -> None:
    """A reduce-scattered block (this rank's rows of a bucket's parameters, padded): each
    parameter's real rows become the gradient of the optimizer's view of them."""
    for i, s in enumerate(slices):
        if s.view is None:
            continue
        rows = layout.block_view(recv, i)[: s.stop - s.start].reshape(s.view.shape)
        if s.view.grad is None:
            s.view.grad = Tensor(rows)
        else:  # accumulate, as gradients do
            s.view.grad.array[...] += rows
            s.view.grad.bump_version()


def _to_host(obj: Any) -> Any:
    """``obj`` with every tensor's array on the host (for pickling across ranks)."""
    if isinstance(obj, Tensor):
        array = obj.array
        return Tensor(array if hasattr(array, "__array_interface__") else array.get())
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj
