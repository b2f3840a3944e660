"""``Optimizer``: the base class of every optimizer, as PyTorch's ``torch.optim.Optimizer``.

A subclass calls ``super().__init__(params, defaults)`` and implements ``step``; parameter
groups, per-parameter ``state``, ``zero_grad``, ``state_dict``/``load_state_dict`` and step hooks
come from here. The built-in optimizers update each parameter's array in place with ``out=``
ufuncs of its own array module (numpy or cupy), after checking every gradient and every state
tensor, so a step that raises leaves parameters and state as they were.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import warnings
from collections import defaultdict

import numpy as np

from ..autograd import Tensor, enable_grad
from ..autograd.function import RemovableHandle, add_hook
from ..backend import array_module_for, get_default_dtype

__all__ = [
    "Optimizer",
    "required",
    "register_optimizer_step_pre_hook",
    "register_optimizer_step_post_hook",
]

_global_step_pre_hooks: dict = {}
_global_step_post_hooks: dict = {}


def register_optimizer_step_pre_hook(hook) -> RemovableHandle:
    """``hook(optimizer, args, kwargs)`` runs before every optimizer's ``step``, before the
    optimizer's own pre-hooks (``torch.optim.optimizer.register_optimizer_step_pre_hook``)."""
    return add_hook(_global_step_pre_hooks, hook)


def register_optimizer_step_post_hook(hook) -> RemovableHandle:
    """``hook(optimizer, args, kwargs)`` runs after every optimizer's ``step``, before the
    optimizer's own post-hooks (``torch.optim.optimizer.register_optimizer_step_post_hook``)."""
    return add_hook(_global_step_post_hooks, hook)


class _RequiredParameter:
    """The default of a hyperparameter that every parameter group must set."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _hooked(step):
    """Wrap a subclass's ``step`` so that the optimizer's step pre/post hooks run around it
    (once, also when an overriding ``step`` calls ``super().step()``)."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        if self._in_step:
            return step(self, *args, **kwargs)
        for hook in [*_global_step_pre_hooks.values(), *self._step_pre_hooks.values()]:
            result = hook(self, args, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(
                        f"a step pre-hook must return None or a tuple of "
                        f"(new_args, new_kwargs), but got {result!r}"
                    )
                args, kwargs = result
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        self._opt_called = True  # read by lr schedulers to warn about a wrong call order
        for hook in [*_global_step_post_hooks.values(), *self._step_post_hooks.values()]:
            hook(self, args, kwargs)
        return out

    return wrapper


def _evaluate(closure):
    """The loss returned by ``closure`` (re-evaluated with gradients enabled), or None."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


def _new_step() -> Tensor:
    """A ``step`` counter: a 0-d CPU tensor, float64 when that is the default dtype, else
    float32 (as PyTorch)."""
    return Tensor(np.zeros((), np.float64 if get_default_dtype().np == np.float64 else np.float32))


def _count_step(state: dict) -> float:
    """Add one to ``state["step"]`` (in place) and return the new count."""
    step = state["step"].array
    step += 1
    return float(step)


def _zeros_like(array) -> Tensor:
    return Tensor(array_module_for(array).zeros_like(array))


def _gradient(p, g, group: dict, l2: bool = True):
    """A new array (the update's scratch space): the gradient, negated when maximizing, plus
    ``weight_decay * p`` when ``l2``."""
    d = g.copy()
    if group["maximize"]:
        array_module_for(d).negative(d, out=d)
    if l2 and group["weight_decay"] != 0:
        d += group["weight_decay"] * p
    return d


def _buffer(state: dict, key: str, like):
    """The array of ``state[key]``, made as zeros like ``like`` when missing (buffers that a
    hyperparameter such as ``momentum`` or ``amsgrad`` turns on)."""
    if key not in state:
        state[key] = _zeros_like(like)
    return state[key].array


def _on_device(array):
    """A context that makes ``array``'s GPU the current one (nothing for numpy arrays)."""
    return contextlib.nullcontext() if isinstance(array, np.ndarray) else array.device


def _check_nonnegative(group: dict, *names: str) -> None:
    """PyTorch's ``ValueError("Invalid learning rate: -1")`` for a negative (or NaN)
    hyperparameter."""
    for name in names:
        if isinstance(group[name], (str, bytes)):  # a common slip: lr="1e-3" from a config
            raise TypeError(
                f"{name} must be a number, got {group[name]!r} of type {type(group[name]).__name__}"
            )
        if not 0.0 <= group[name]:
            label = {"lr": "learning rate", "eps": "epsilon value"}.get(name, f"{name} value")
            raise ValueError(f"Invalid {label}: {group[name]}")


def _type_name(x) -> str:
    cls = type(x)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


class Optimizer:
    """Base class of all optimizers.

    ``params`` is an iterable of tensors, of ``(name, tensor)`` pairs, or of dicts (parameter
    groups: ``{"params": [...], "lr": ...}``, any hyperparameter left out taking its value from
    ``defaults``)."""

    _in_step = False

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self._step_pre_hooks: dict = {}
        self._step_post_hooks: dict = {}
        self._check_hyperparameters(defaults)
        if isinstance(params, Tensor):
            raise TypeError(
                f"params argument given to the optimizer should be an iterable of "
                f"Tensors or dicts, but got {_type_name(params)}"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, "
                "but the ordering of tensors in sets will change between runs. "
                "Please use a list instead."
            )
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:
            cls.step = _hooked(cls.__dict__["step"])

    def _check_hyperparameters(self, group: dict) -> None:
        """Raise ValueError for invalid hyperparameters in ``group`` (built-ins override)."""

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("_step_pre_hooks", {})
        self.__dict__.setdefault("_step_post_hooks", {})

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"

    # ---- parameter groups -------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters (a dict with ``"params"`` and optional hyperparameters),
        e.g. layers unfrozen during fine-tuning."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {_type_name(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, "
                "but the ordering of tensors in sets will change between runs. "
                "Please use a list instead."
            )
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names and len(names) != len(params):
            raise ValueError(
                "all optimizer params should be with/without names. Some param names are missing"
            )
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but one of the params is {_type_name(p)}"
                )
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        group = dict(param_group, params=params)
        if names:
            group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required "
                    f"optimization parameter {name}"
                )
            group.setdefault(name, default)
        self._check_hyperparameters(group)
        if len({id(p) for p in params}) != len(params):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; "
                "each is updated once per occurrence",
                stacklevel=3,
            )
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        param_group.update(group)  # PyTorch fills in the caller's dict too
        self.param_groups.append(param_group)

    # ---- gradients and steps ----------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized tensors: to None (the default, which saves
        memory and skips the parameter in the next step) or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g.zero_()

    def step(self, closure=None):
        """Update the parameters once. ``closure``, when given, re-evaluates the model and
        returns the loss, which ``step`` returns. Subclasses implement this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def register_step_pre_hook(self, hook) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs before each ``step``; returning a tuple
        ``(new_args, new_kwargs)`` replaces the step's arguments."""
        return add_hook(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs after each ``step``."""
        return add_hook(self._step_post_hooks, hook)

    def _update_each(self, update, init_state=None) -> None:
        """The update loop of the built-in optimizers: ``update(param_array, grad_array, state,
        group)`` changes the parameter and its state in place; ``init_state(param_array, state,
        group)`` fills an empty state first. Every gradient and every state tensor is checked
        against its parameter first, so an error leaves everything unchanged."""
        todo = []
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                g = p.grad
                if g is None:
                    continue
                where = f"parameter {pi} of param group {gi}"
                self._check_like(p, g, f"the gradient of {where}")
                for key, value in self.state.get(p, {}).items():
                    if key != "step" and isinstance(value, Tensor):
                        self._check_like(p, value, f"state[{key!r}] of {where}")
                todo.append((group, p, g.array))
        for group, p, g in todo:
            state = self.state.get(p) or {}
            with _on_device(p.array):
                if not state and init_state is not None:
                    init_state(p.array, state, group)
                update(p.array, g, state, group)
            if state:
                self.state[p] = state
            p.bump_version()

    def _check_like(self, p: Tensor, t: Tensor, what: str) -> None:
        for attr in ("shape", "dtype", "device"):
            have, want = getattr(t, attr), getattr(p, attr)
            if have != want:
                show = list if attr == "shape" else str
                raise RuntimeError(
                    f"{type(self).__name__}.step: {what} has {attr} {show(have)} but the "
                    f"parameter has {attr} {show(want)}; nothing was updated. Give it the "
                    f"parameter's shape, dtype and device (or reset the state of this optimizer)."
                )

    # ---- state dict -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state in PyTorch's format: ``{"state": {index: {...}},
        "param_groups": [{..., "params": [index, ...]}]}``, parameters numbered in group order.
        State tensors are the optimizer's own, not copies (deep-copy the dict to keep a
        snapshot while training goes on)."""
        index: dict = {}
        for p in itertools.chain.from_iterable(g["params"] for g in self.param_groups):
            index.setdefault(id(p), len(index))
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state saved by ``state_dict`` (from this optimizer or one built over the same
        parameters). Everything is copied; floating state tensors take their parameter's dtype
        and device, except ``step`` counters."""
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        groups = self.param_groups
        if len(saved_groups) != len(groups):
            raise ValueError(
                f"loaded state dict has a different number of parameter groups: "
                f"{len(saved_groups)} in the state dict, {len(groups)} in the "
                f"optimizer"
            )
        for i, (saved, group) in enumerate(zip(saved_groups, groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"loaded state dict contains a parameter group that doesn't "
                    f"match the size of optimizer's group: group {i} has "
                    f"{len(saved['params'])} parameters in the state dict, "
                    f"{len(group['params'])} in the optimizer"
                )
        id_map = dict(
            zip(
                itertools.chain.from_iterable(g["params"] for g in saved_groups),
                itertools.chain.from_iterable(g["params"] for g in groups),
            )
        )
        state: defaultdict = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                state[id_map[k]] = _cast(id_map[k], v)
                for key, value in state[id_map[k]].items():
                    if (
                        key != "step"
                        and isinstance(value, Tensor)
                        and value.shape != id_map[k].shape
                    ):
                        raise ValueError(
                            f"loaded state dict has state[{key!r}] of shape "
                            f"{list(value.shape)} for parameter {k}, whose shape "
                            f"is {list(id_map[k].shape)}; the optimizer is "
                            f"unchanged. Was it saved for another model?"
                        )
            else:
                state[k] = copy.deepcopy(v)
        for saved, group in zip(saved_groups, groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
        self.state = state
        self.param_groups = saved_groups


def _cast(param: Tensor, value, key=None):
    """A copy of a loaded state value with its tensors on ``param``'s device (and dtype, for a
    floating parameter), ``step`` counters excepted."""
    if isinstance(value, Tensor):
        if key == "step":
            return value.detach().clone()
        dtype = param.dtype if param.is_floating_point() else value.dtype
        return value.detach().to(device=param.device, dtype=dtype, copy=True)
    if isinstance(value, dict):
        return {k: _cast(param, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(param, v, key) for v in value)
    return copy.deepcopy(value)
