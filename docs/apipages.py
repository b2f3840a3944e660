"""Writes the API reference pages (``docs/api/*.rst``) from what distgrad exports.

One page per public namespace; each public class or function is documented once, on the page
of the first namespace in ``PAGES`` that exports it (``distgrad.Tensor``, not also
``distgrad.autograd.Tensor``). Namespaces not listed (new packages) get a page at the end.
"""

import importlib
import inspect
import os
import pkgutil

# (module, title) in reading order.
PAGES = [
    ("distgrad", "distgrad: tensors, creation and math"),
    ("distgrad.autograd", "distgrad.autograd"),
    ("distgrad.autograd.graph", "distgrad.autograd.graph"),
    ("distgrad.func", "distgrad.func"),
    ("distgrad.nn", "distgrad.nn"),
    ("distgrad.nn.functional", "distgrad.nn.functional"),
    ("distgrad.nn.init", "distgrad.nn.init"),
    ("distgrad.nn.utils", "distgrad.nn.utils"),
    ("distgrad.optim", "distgrad.optim"),
    ("distgrad.optim.lr_scheduler", "distgrad.optim.lr_scheduler"),
    ("distgrad.data", "distgrad.data"),
    ("distgrad.data.datasets", "distgrad.data.datasets"),
    ("distgrad.data.distributed", "distgrad.data.distributed"),
    ("distgrad.distributed", "distgrad.distributed"),
    ("distgrad.distributed.timeline", "distgrad.distributed.timeline"),
    ("distgrad.distributed.cost_model", "distgrad.distributed.cost_model"),
    ("distgrad.checkpoint", "distgrad.checkpoint"),
    ("distgrad.distributed.checkpoint", "distgrad.distributed.checkpoint"),
    ("distgrad.distributed.checkpoint.state_dict", "distgrad.distributed.checkpoint.state_dict"),
    ("distgrad.serialization", "distgrad.save / distgrad.load"),
    ("distgrad.safetensors", "distgrad.safetensors"),
    ("distgrad.amp", "distgrad.amp"),
    ("distgrad.jit", "distgrad.jit"),
    ("distgrad.onnx", "distgrad.onnx"),
    ("distgrad.utils", "distgrad.utils"),
    ("distgrad.viz", "distgrad.viz"),
    ("distgrad.cuda", "distgrad.cuda"),
    ("distgrad.backend.logconfig", "distgrad.backend.logconfig: logging"),
    ("distgrad.backend", "distgrad.backend"),
]
SKIP = {"distgrad.launcher", "distgrad.ops", "distgrad.nn.modules"}  # CLI; re-exported elsewhere


def version():
    import distgrad

    return distgrad.__version__


def _all_pages():
    import distgrad

    pages = list(PAGES)
    listed = {m for m, _ in pages}
    for info in pkgutil.walk_packages(distgrad.__path__, "distgrad."):
        name = info.name
        if info.ispkg and name not in listed and name not in SKIP and "._" not in name:
            pages.append((name, name))
    return pages


def _exports(module):
    names = getattr(module, "__all__", None) or [n for n in dir(module) if n[0] != "_"]
    for name in names:
        obj = getattr(module, name, None)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(
            obj, "__module__", ""
        ).startswith("distgrad"):
            yield name, obj


def write(directory):
    """Write ``index.rst`` and one page per namespace into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    seen = set()
    toc = []
    for module_name, title in _all_pages():
        module = importlib.import_module(module_name)
        entries = []
        for name, obj in sorted(_exports(module), key=lambda item: item[0].lower()):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            kind = "autoclass" if inspect.isclass(obj) else "autofunction"
            entries.append(f".. {kind}:: {module_name}.{name}\n")
        doc = (inspect.getdoc(module) or "").strip()
        lines = [title, "=" * len(title), "", f".. module:: {module_name}", ""]
        if doc:
            lines += [doc, ""]
        lines += entries or ["(Everything here is documented on the pages above.)\n"]
        page = module_name.replace(".", "_")
        _write_if_changed(os.path.join(directory, page + ".rst"), "\n".join(lines))
        toc.append(page)
    index = ["API reference", "=============", "", ".. toctree::", "   :maxdepth: 1", ""]
    index += [f"   {page}" for page in toc]
    _write_if_changed(os.path.join(directory, "index.rst"), "\n".join(index) + "\n")


def _write_if_changed(path, text):
    if os.path.exists(path) and open(path).read() == text:
        return
    with open(path, "w") as f:
        f.write(text)
