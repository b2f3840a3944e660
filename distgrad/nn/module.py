"""``nn.Module``: the base class of layers and models, with PyTorch's API."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

from ..autograd import RemovableHandle, Tensor, no_grad
from ..autograd.function import add_hook
from .parameter import Parameter

__all__ = ["Module"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class for all neural network modules. Subclasses assign parameters, buffers and
    submodules as attributes in ``__init__`` and implement ``forward``."""

    training: bool
    _version: int = 1

    def __init__(self):
        for name, value in (
            ("training", True),
            ("_parameters", OrderedDict()),
            ("_buffers", OrderedDict()),
            ("_non_persistent_buffers", set()),
            ("_modules", OrderedDict()),
            ("_forward_pre_hooks", OrderedDict()),
            ("_forward_hooks", OrderedDict()),
        ):
            object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):
        """The computation of the module, called by ``module(*args)``; every subclass implements it.

        Call the module rather than ``forward`` so that forward hooks run."""
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ---- registration --------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__ and isinstance(value, (Parameter, Module)):
            raise AttributeError(
                f"cannot assign {type(value).__name__} '{name}' before Module.__init__() call"
            )
        params, buffers, modules = (
            self.__dict__.get(k) for k in ("_parameters", "_buffers", "_modules")
        )
        if isinstance(value, Parameter):
            self._remove_name(name)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter "
                    f"'{name}' (nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._remove_name(name)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as child module "
                    f"'{name}' (nn.Module or None expected)"
                )
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                    f"(Tensor or None expected)"
                )
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _remove_name(self, name):
        self.__dict__.pop(name, None)
        for key in ("_parameters", "_buffers", "_modules"):
            self.__dict__[key].pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            group = d.get(key)
            if group is not None and name in group:
                return group[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for key in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__[key]:
                del self.__dict__[key][name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    def _check_name(self, kind, name):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{kind} name can't contain \".\" or be empty, got '{name}'")
        if (
            hasattr(self, name)
            and name not in self._parameters
            and name not in self._buffers
            and name not in self._modules
        ):
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or ``None``) under ``name``; it shows in ``parameters()`` and the state dict."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._check_name("parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{type(param).__name__}' object to parameter "
                f"'{name}' (nn.Parameter or None required)"
            )
        if param is not None and param.grad_fn is not None:
            raise ValueError(
                f"Cannot assign non-leaf Tensor to parameter '{name}'. Model "
                f"parameters must be created explicitly."
            )
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register a tensor that is state but not a parameter (e.g. BatchNorm's running
        mean); persistent buffers go into ``state_dict``."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_name("buffer", name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign '{type(tensor).__name__}' object to buffer "
                f"'{name}' (Tensor or None required)"
            )
        self._remove_name(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a submodule (or ``None``) under ``name``, as assigning an attribute does."""
        """Alias of :meth:`add_module`."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_name("module", name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target: str) -> Module:
        """Return the submodule at a dotted path such as ``"encoder.layers.0"``."""
        module = self
        for item in target.split(".") if target else []:
            if item not in module._modules:
                raise AttributeError(
                    f"{type(module).__name__} has no submodule '{item}' (looking up '{target}')"
                )
            module = module._modules[item]
        return module

    def get_parameter(self, target: str) -> Parameter:
        """Return the parameter at a dotted path such as ``"encoder.weight"``."""
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if name not in module._parameters:
            raise AttributeError(f"{type(module).__name__} has no parameter '{name}'")
        return module._parameters[name]

    # ---- iteration -----------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """Iterate over ``(name, module)`` for this module and all submodules, depth first, each once."""
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:  # pre-order, children in registration order
            name, module = stack.pop()
            if remove_duplicate:
                if id(module) in memo:
                    continue
                memo.add(id(module))
            yield name, module
            children = [
                (f"{name}.{n}" if name else n, m)
                for n, m in module._modules.items()
                if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self):
        """Iterate over this module and all its submodules, each once."""
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """Iterate over ``(name, module)`` of the direct submodules."""
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        """Iterate over the direct submodules."""
        for _, m in self.named_children():
            yield m

    def _named_members(self, attr, prefix, recurse, remove_duplicate):
        seen = set()
        modules = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        for module_prefix, module in modules:
            for name, value in getattr(module, attr).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ):
        """Iterate over ``(dotted name, parameter)``, each shared parameter once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        """Iterate over the parameters (of submodules too when ``recurse``), each shared one once."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """Iterate over ``(dotted name, buffer)`` of the registered buffers."""
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        """Iterate over the registered buffers."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- state dict ----------------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by dotted name; tensors share storage with the
        module (detached unless ``keep_vars``)."""
        destination = OrderedDict() if destination is None else destination
        for name, module in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            base = f"{name}." if name else ""
            for pname, p in module._parameters.items():
                if p is not None:
                    destination[base + pname] = p if keep_vars else p.detach()
            for bname, b in module._buffers.items():
                if b is not None and bname not in module._non_persistent_buffers:
                    destination[base + bname] = b if keep_vars else b.detach()
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy parameters and buffers from ``state_dict``. Every key, shape and dtype is
        checked before anything is copied, so a failed load leaves the module unchanged.
        Returns ``(missing_keys, unexpected_keys)``."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor):
                errors.append(
                    f'While copying the parameter named "{key}", expected a Tensor '
                    f"from the checkpoint but got {type(value).__name__}."
                )
            elif tuple(value.shape) != tuple(target.shape):
                errors.append(
                    f"size mismatch for {key}: copying a param with shape "
                    f"{list(value.shape)} from checkpoint, the shape in current model "
                    f"is {list(target.shape)}."
                )
        if strict:
            if unexpected:
                errors.insert(
                    0,
                    "Unexpected key(s) in state_dict: "
                    + ", ".join(f'"{k}"' for k in unexpected)
                    + ". ",
                )
            if missing:
                errors.insert(
                    0,
                    "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ". ",
                )
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    self._load_one(key, target, state_dict[key], assign)
        return IncompatibleKeys(missing, unexpected)

    def _load_one(self, key, target, value, assign):
        module_path, _, name = key.rpartition(".")
        module = self.get_submodule(module_path)
        if assign:
            if name in module._parameters:
                module._parameters[name] = Parameter(value.detach(), target.requires_grad)
            else:
                module._buffers[name] = value.detach()
        else:
            target.copy_(value)

    # ---- modes, devices, dtypes ----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode on this module and its submodules; return self."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (dropout off, batch norm uses running statistics); return self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` on every parameter; return self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to ``None`` (default) or to zeros."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_()
                p.grad.zero_()

    def apply(self, fn) -> Module:
        """Call ``fn`` on every submodule (children first) and on self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def _apply_to_tensors(self, convert) -> Module:
        """Replace every parameter's and buffer's storage by ``convert(tensor)`` (in place, so
        optimizers holding the parameters keep working)."""
        with no_grad():
            for module in self.modules():
                for p in module._parameters.values():
                    if p is not None:
                        p.data = convert(p)
                        if p.grad is not None:
                            p.grad = convert(p.grad)
                for name, b in module._buffers.items():
                    if b is not None:
                        module._buffers[name] = convert(b)
        return self

    def to(self, *args, **kwargs) -> Module:
        """Move and/or cast parameters and buffers (floating dtypes only are cast)."""
        from ..ops.conversion import parse_to_args

        dtype, device, _ = parse_to_args(args, dict(kwargs))
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(
                f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}"
            )

        def convert(t):
            out = t.to(device) if device is not None else t
            if dtype is not None and t.is_floating_point():
                out = out.to(dtype)
            return out

        return self._apply_to_tensors(convert)

    def share_memory(self) -> Module:
        """Returns ``self``. PyTorch moves parameters to shared memory for Hogwild-style
        training in forked processes; distgrad's processes do not share tensors (they
        communicate through collectives), so there is nothing to move."""
        return self

    def cpu(self) -> Module:
        """Move parameters and buffers to host memory (numpy); return self."""
        return self.to("cpu")

    def cuda(self, device=None) -> Module:
        """Move parameters and buffers to a CUDA device (cupy); return self."""
        return self.to(
            "cuda" if device is None else f"cuda:{device}" if isinstance(device, int) else device
        )

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32; return self."""
        from ..backend.dtypes import float32

        return self.to(float32)

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64; return self."""
        from ..backend.dtypes import float64

        return self.to(float64)

    def half(self) -> Module:
        """Cast floating-point parameters and buffers to float16; return self."""
        from ..backend.dtypes import float16

        return self.to(float16)

    # ---- hooks ---------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, args)`` before forward; may return replacement args."""
        return add_hook(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook) -> RemovableHandle:
        """``hook(module, args, output)`` after forward; may return a replacement output."""
        return add_hook(self._forward_hooks, hook)

    # ---- printing ------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The module's own settings shown inside ``repr(module)``; subclasses override it."""
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        main = type(self).__name__ + "("
        if not lines:
            return main + ")"
        if len(lines) == 1 and not self._modules:
            return main + lines[0] + ")"
        return main + "\n  " + "\n  ".join(lines) + "\n)"

    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)
