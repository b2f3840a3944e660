"""The package list in pyproject.toml names every package, and the layers import only the
layers above them."""

import ast
import os
from pathlib import Path

import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _packages_on_disk():
    found = set()
    for base, name in (("distgrad", "distgrad"), ("launcher", "distgrad.launcher")):
        for dirpath, _, files in os.walk(os.path.join(ROOT, base)):
            if "__init__.py" in files and "__pycache__" not in dirpath:
                rel = os.path.relpath(dirpath, os.path.join(ROOT, base))
                found.add(name if rel == "." else f"{name}.{rel.replace(os.sep, '.')}")
    return found


def test_pyproject_lists_every_package():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    assert _packages_on_disk() <= listed, sorted(_packages_on_disk() - listed)


# Which distgrad subpackages each layer may import (DESIGN.md: backend -> autograd -> ops ->
# nn/optim/data/serialization -> distributed; the launcher imports nothing of distgrad).
ALLOWED = {
    "backend": {"backend"},
    "autograd": {"backend", "autograd"},
    "ops": {"backend", "autograd", "ops"},
    "nn": {"backend", "autograd", "ops", "nn"},
    "optim": {"backend", "autograd", "ops", "optim"},
}


def _imports(path, package):
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("distgrad"):
                yield target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("distgrad"):
                    yield alias.name


def test_layers_import_only_layers_above():
    bad = []
    for layer, allowed in ALLOWED.items():
        top = os.path.join(ROOT, "distgrad", layer)
        for dirpath, _, files in os.walk(top):
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT))
                package = os.path.dirname(rel).replace(os.sep, ".")
                for target in _imports(os.path.join(dirpath, f), package):
                    parts = target.split(".")
                    if len(parts) > 1 and parts[1] not in allowed and parts[1] != "":
                        bad.append(f"{rel} imports {target}")
    assert not bad, "\n".join(bad)


def test_launcher_imports_nothing_of_distgrad():
    top = os.path.join(ROOT, "launcher")
    bad = []
    for dirpath, _, files in os.walk(top):
        for f in files:
            if f.endswith(".py"):
                src = Path(dirpath, f).read_text()
                tree = ast.parse(src)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        bad += [a.name for a in node.names if a.name.startswith("distgrad")]
                    elif (
                        isinstance(node, ast.ImportFrom)
                        and node.level == 0
                        and (node.module or "").startswith("distgrad")
                    ):
                        bad.append(node.module)
    assert not bad, bad


def test_version_is_written_once():
    """pyproject.toml reads the version from distgrad/_version.py; nothing else assigns one."""
    import distgrad
    from distgrad import _version

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)
    assert "version" not in config["project"] and "version" in config["project"]["dynamic"]
    dynamic = config["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "distgrad._version.__version__"}
    assert distgrad.__version__ == _version.__version__
    others = []
    for base in ("distgrad", "launcher"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, base)):
            for name in files:
                path = os.path.join(dirpath, name)
                if name.endswith(".py") and not path.endswith(
                    os.path.join("distgrad", "_version.py")
                ):
                    if "__version__ =" in Path(path).read_text():
                        others.append(path)
    assert others == []
