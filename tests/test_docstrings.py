"""Every public callable of distgrad has a docstring (the API reference is built from them).

Public means: reachable from a public namespace (every package under ``distgrad``, plus the
public modules listed below) under a name without a leading underscore (or listed in the
module's ``__all__``), defined in distgrad; for classes also each public method and property
defined in the class. An override inherits its parent's docstring (``inspect.getdoc``), so
``forward`` of a layer needs none when ``Module.forward`` has one.
"""

import importlib
import inspect
import pkgutil

import distgrad

# Public modules that are not packages (packages are found by walking distgrad).
PUBLIC_MODULES = [
    "distgrad.autograd.graph",
    "distgrad.backend.logconfig",
    "distgrad.cuda",
    "distgrad.data.datasets",
    "distgrad.data.distributed",
    "distgrad.func",
    "distgrad.nn.functional",
    "distgrad.nn.init",
    "distgrad.optim.lr_scheduler",
    "distgrad.safetensors",
    "distgrad.serialization",
    "distgrad.utils.checkpoint",
    "distgrad.viz",
]
# Not part of the Python API: the launcher is a command (``distgrad-run --help``), and the
# ops package's names are re-exported (and so checked) as ``distgrad.*``.
EXCLUDED = {"distgrad.launcher"}


def public_modules():
    """Names of the modules whose public names make up distgrad's API."""
    names = {"distgrad", *PUBLIC_MODULES}
    for info in pkgutil.walk_packages(distgrad.__path__, "distgrad."):
        parts = info.name.split(".")
        if info.ispkg and not any(p.startswith("_") for p in parts) and info.name not in EXCLUDED:
            names.add(info.name)
    return sorted(names)


def _is_public_callable(obj):
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
        return False
    return getattr(obj, "__module__", "").startswith("distgrad")


def _members(cls):
    """(name, docstring) of the public methods and properties ``cls`` defines itself."""
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(attr, property):
            yield name, attr.__doc__
        elif inspect.isfunction(attr) or isinstance(attr, (staticmethod, classmethod)):
            yield name, inspect.getdoc(getattr(cls, name))


def public_api():
    """(qualified name, docstring) of every public callable, each object once."""
    seen = set()
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or [n for n in dir(module) if n[0] != "_"]
        for name in names:
            obj = getattr(module, name, None)
            if not _is_public_callable(obj):
                continue
            key = (obj.__module__, obj.__qualname__)
            if key in seen:
                continue
            seen.add(key)
            yield f"{module_name}.{name}", inspect.getdoc(obj)
            if inspect.isclass(obj):
                for member, doc in _members(obj):
                    yield f"{module_name}.{name}.{member}", doc


def test_every_public_callable_has_a_docstring():
    api = list(public_api())
    assert len(api) > 400  # the walk really found the API
    missing = [name for name, doc in api if not (doc and doc.strip())]
    assert not missing, f"{len(missing)} public callables without a docstring:\n" + "\n".join(
        missing
    )


def test_the_walk_sees_a_missing_docstring():
    # The check itself can fail: a class without docstrings is reported, with its method.
    class Undocumented:
        def method(self):
            pass

    Undocumented.__module__ = "distgrad.fake"
    assert _is_public_callable(Undocumented)
    assert inspect.getdoc(Undocumented) is None
    assert list(_members(Undocumented)) == [("method", None)]
