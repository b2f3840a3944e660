"""``nn.utils.parametrize``: a tensor of a module computed from other parameters on each
access, as ``torch.nn.utils.parametrize`` (the same ``parametrizations.<name>.original``
state-dict layout, so torch checkpoints load unchanged).

``register_parametrization(module, "weight", P)`` moves ``module.weight`` to
``module.parametrizations.weight.original`` (or ``original0``, ``original1``... when ``P``'s
``right_inverse`` returns several tensors) and makes ``module.weight`` a property computing
``P(original...)``; the module's class is swapped for a subclass holding that property."""

from __future__ import annotations

import contextlib

from ...autograd import Tensor, no_grad
from ..container import ModuleList
from ..module import Module
from ..parameter import Parameter

__all__ = [
    "register_parametrization",
    "remove_parametrizations",
    "is_parametrized",
    "cached",
    "ParametrizationList",
]


class ParametrizationList(ModuleList):
    """The parametrizations of one tensor, applied in order, and its ``original`` tensor(s)."""

    def __init__(self, modules, original, unsafe: bool = False):
        super().__init__(modules)
        self.unsafe = unsafe
        first = modules[0]
        with no_grad():
            new = original
            for module in reversed(list(modules)):
                if hasattr(module, "right_inverse"):
                    new = module.right_inverse(new)
        self.is_tensor = isinstance(new, Tensor)
        if self.is_tensor:
            if not unsafe and (new.shape != original.shape or new.dtype != original.dtype):
                raise ValueError(
                    "When `right_inverse` outputs one tensor, it may not change the dtype or "
                    f"shape: got {new.dtype} {list(new.shape)} for {original.dtype} "
                    f"{list(original.shape)}"
                )
            with no_grad():
                original.copy_(new)
            self.original = original if isinstance(original, Parameter) else Parameter(original)
            self.original.requires_grad_(original.requires_grad)
        else:
            self.ntensors = len(new)
            for i, t in enumerate(new):
                p = Parameter(t.detach().clone())
                p.requires_grad_(original.requires_grad)
                setattr(self, f"original{i}", p)
        del first

    def right_inverse(self, value) -> None:
        """Set the original tensor(s) so that the parametrized value becomes ``value``."""
        with no_grad():
            for module in reversed(list(self)):
                if hasattr(module, "right_inverse"):
                    value = module.right_inverse(value)
            if self.is_tensor:
                self.original.copy_(value)
            else:
                for i, t in enumerate(value):
                    getattr(self, f"original{i}").copy_(t)

    def forward(self):
        """The parametrized tensor."""
        if self.is_tensor:
            x = self[0](self.original)
        else:
            x = self[0](*(getattr(self, f"original{i}") for i in range(self.ntensors)))
        for module in list(self)[1:]:
            x = module(x)
        return x


def _inject_property(module: Module, name: str) -> None:
    cls = module.__class__
    if not getattr(cls, "_is_parametrized_class", False):
        cls = type(f"Parametrized{cls.__name__}", (cls,), {"_is_parametrized_class": True})
        module.__class__ = cls

    def get(self):
        return self.parametrizations[name]()

    def set_(self, value):
        self.parametrizations[name].right_inverse(value)

    setattr(cls, name, property(get, set_))


def register_parametrization(module: Module, tensor_name: str, parametrization, *, unsafe=False):
    """Parametrize ``module.<tensor_name>`` by the module ``parametrization`` (see the module
    docstring); registering a second one on the same tensor chains it."""
    from ..container import ModuleDict

    if is_parametrized(module, tensor_name):
        module.parametrizations[tensor_name].append(parametrization)
        return module
    if tensor_name in module._buffers or tensor_name in module._parameters:
        original = getattr(module, tensor_name)
    else:
        raise ValueError(
            f"Module '{module}' does not have a parameter, a buffer, or a parametrized element "
            f"with name '{tensor_name}'"
        )
    plist = ParametrizationList([parametrization], original, unsafe=unsafe)
    delattr(module, tensor_name)
    if not is_parametrized(module):
        module.parametrizations = ModuleDict()
    module.parametrizations[tensor_name] = plist
    _inject_property(module, tensor_name)
    return module


def is_parametrized(module: Module, tensor_name: str | None = None) -> bool:
    """Whether ``module`` (or its ``tensor_name``) has a parametrization."""
    plists = module._modules.get("parametrizations")
    if plists is None:
        return False
    return tensor_name is None or tensor_name in plists


def remove_parametrizations(module: Module, tensor_name: str, leave_parametrized: bool = True):
    """Undo ``register_parametrization``: ``module.<tensor_name>`` becomes a plain parameter
    again, holding the parametrized value (or the original, if not ``leave_parametrized``)."""
    if not is_parametrized(module, tensor_name):
        raise ValueError(f"Module {module} does not have a parametrization on {tensor_name}")
    plist = module.parametrizations[tensor_name]
    if leave_parametrized:
        with no_grad():
            value = getattr(module, tensor_name).detach().clone()
        param = Parameter(value)
    elif plist.is_tensor:
        param = plist.original
    else:
        raise ValueError(
            "Cannot leave unparametrized (`leave_parametrized=False`) a tensor that is "
            "parametrized in terms of a sequence of tensors."
        )
    del module.parametrizations[tensor_name]
    delattr(module.__class__, tensor_name)
    if not module.parametrizations:
        delattr(module, "parametrizations")
        module.__class__ = module.__class__.__bases__[0]
    module.register_parameter(tensor_name, param)
    return module


@contextlib.contextmanager
def cached():
    """Accepted for compatibility: parametrized tensors are recomputed on every access."""
    yield
