"""Which cupy names distgrad's GPU code uses, found by parsing its sources, and whether the real
cupy has them (``tests/gpu/test_cupy_api.py``; needs the real ``cupy-cuda12x`` and
``nvidia-nccl-cu12`` wheels, no GPU: ``make cupy-api``).

``uses()`` walks every module of ``distgrad/`` and follows, inside each function, the values
that are cupy or something of it: ``import cupy`` / ``from cupy.cuda import nccl``, the results
of ``cupy_or_none()`` / ``_cupy()`` / ``_import_nccl()``, parameters named ``cupy``, ``cp`` or
``nccl``, ``self.<attr>`` assigned one of those, local functions returning one, and instances of
cupy classes (``cp.cuda.Stream(...)``, ``with cp.cuda.Device(i)``). Each attribute read, call
(with its number of positional arguments and its keywords) and ``with`` on such a value is a
``Use``; ``NCCL_*`` string constants in distgrad's NCCL module are uses of ``cupy.cuda.nccl``.
``xp_uses()`` lists every ``xp.<name>`` (the array module of an op, numpy or cupy).

cupy's compiled functions carry their signature only in the first line of their docstring;
``signature()`` reads it from there when ``inspect`` cannot. What a cupy function returns is not
written anywhere a program can read, so ``RETURNS`` names it for the few calls whose result
distgrad uses further; a use that cannot be followed shows up in ``Scan.unresolved``.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "distgrad"

#: Return types of the cupy calls whose results distgrad uses further (see the docstring).
RETURNS = {
    "cupy.cuda.get_current_stream": "cupy.cuda.Stream",
    "cupy.cuda.Stream.record": "cupy.cuda.Event",
    "cupy.cuda.Stream.end_capture": "cupy.cuda.graph.Graph",
    "cupy.get_default_memory_pool": "cupy.cuda.MemoryPool",
}
#: Calls whose result is a cupy module, and parameter names that hold one.
MODULE_CALLS = {"cupy_or_none": "cupy", "_cupy": "cupy", "_import_nccl": "cupy.cuda.nccl"}
MODULE_PARAMS = {"cupy": "cupy", "cp": "cupy", "nccl": "cupy.cuda.nccl"}


@dataclass(frozen=True)
class Val:
    """A value of the program: the cupy object at ``path``, or (``instance``) an instance of
    the cupy class at ``path``."""

    path: str
    instance: bool = False


@dataclass(frozen=True)
class Use:
    """``path`` read (``call`` None), called with ``call = (positional count, keywords,
    starred)``, or used in a ``with`` (``call == "with"``), at ``where``."""

    path: str
    where: str
    call: tuple | str | None = None
    through_instance: bool = False


@dataclass
class Scan:
    """What ``uses()`` found."""

    uses: list = field(default_factory=list)
    unresolved: list = field(default_factory=list)  # "file:line: what" that could not be followed


# ---- the real package ---------------------------------------------------------------------------
def lookup(path: str):
    """The object at a dotted path of the real cupy (``AttributeError`` if it has none)."""
    import importlib

    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for i, name in enumerate(parts[1:], 1):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            try:  # a submodule not imported by its package
                obj = importlib.import_module(".".join(parts[: i + 1]))
            except ImportError:
                raise AttributeError(f"{'.'.join(parts[:i])} has no attribute {name!r}") from None
    return obj


def documented_instance_attribute(path: str) -> bool:
    """Whether ``path`` (``cupy.cuda.Stream.ptr``) is an instance attribute that its class's
    docstring documents (``~Stream.ptr (intptr_t): ...`` under ``Attributes:``); compiled
    classes set such attributes per instance, so the class itself has none."""
    owner, _, attr = path.rpartition(".")
    try:
        cls = lookup(owner)
    except (AttributeError, ImportError):
        return False
    if not inspect.isclass(cls):
        return False
    doc = "".join(c.__doc__ or "" for c in cls.__mro__)
    section = doc.partition("Attributes:")[2]
    return re.search(rf"(~?\b\w+\.)?\b{re.escape(attr)}\b\s*\(", section) is not None


_DOC_SIGNATURE = re.compile(r"^\s*[\w.]*\((.*?)\)(\s*->.*)?\s*$")


def signature(obj, drop_self: bool = False) -> inspect.Signature | None:
    """``obj``'s signature: from ``inspect``, else from the first line of its docstring
    (cupy's compiled functions); None when neither says."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        sig = _from_docstring(obj)
    if sig is None:
        return None
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name == "self":
        sig = sig.replace(parameters=params[1:])
    return sig


def _from_docstring(obj) -> inspect.Signature | None:
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    match = _DOC_SIGNATURE.match(doc[0]) if doc else None
    if match is None:
        return None
    params, kind = [], inspect.Parameter.POSITIONAL_OR_KEYWORD
    for part in filter(None, (p.strip() for p in _split_commas(match.group(1).replace("\\", "")))):
        if part == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        if part == "/":  # what came before is positional-only
            params = [p.replace(kind=inspect.Parameter.POSITIONAL_ONLY) for p in params]
            continue
        if part.startswith("**"):
            params.append(inspect.Parameter(part[2:], inspect.Parameter.VAR_KEYWORD))
            continue
        if part.startswith("*"):
            params.append(inspect.Parameter(part[1:], inspect.Parameter.VAR_POSITIONAL))
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        head, eq, _ = part.partition("=")
        name = head.split()[-1].lstrip("*")  # "intptr_t sendbuf" -> "sendbuf"
        default = None if eq else inspect.Parameter.empty
        if not name.isidentifier():
            return None
        params.append(inspect.Parameter(name, kind, default=default))
    try:
        return inspect.Signature(params)
    except ValueError:  # e.g. a default before a required parameter: not a signature
        return None


def _split_commas(text: str) -> list:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def call_problem(obj, call: tuple, through_instance: bool) -> str | None:
    """Why ``obj`` cannot be called as ``call`` says (None if it can, or if its signature is
    unknown)."""
    npos, keywords, starred = call
    sig = signature(obj, drop_self=through_instance or inspect.isclass(obj))
    if inspect.isclass(obj):
        sig = signature(obj) or signature(obj.__init__, drop_self=True)
    if sig is None:
        return None
    try:
        if starred:
            names = {p.name for p in sig.parameters.values()}
            var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
            missing = [k for k in keywords if k not in names and not var_kw]
            if missing:
                raise TypeError(f"unexpected keyword(s) {missing}")
        else:
            sig.bind(*[None] * npos, **dict.fromkeys(keywords))
    except TypeError as exc:
        return f"{exc} (real signature {sig})"
    return None


# ---- distgrad's sources -------------------------------------------------------------------------
class _Module:
    def __init__(self, path: Path):
        self.path = path
        self.name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        self.tree = ast.parse(path.read_text(), str(path))
        self.globals: dict = {}
        self.functions = {
            n.name: n
            for n in self.tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self.returns: dict = {}  # module-level function -> Val it returns
        self.class_attrs: dict = {}  # class name -> {attribute of self: Val}


class _Resolver:
    """Follows cupy values through one function (flow-insensitive: a name holds what any
    assignment in the function gives it)."""

    def __init__(self, scan, module: _Module, cls: str | None, func, parent=None):
        self.scan, self.module, self.cls, self.func = scan, module, cls, func
        self.parent = parent  # the enclosing function's resolver (closures)
        self.env: dict = {}
        if func is not None:
            for arg in [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]:
                if arg.arg in MODULE_PARAMS:
                    self.env[arg.arg] = Val(MODULE_PARAMS[arg.arg])

    def value(self, node):
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            if self.parent is not None:
                return self.parent.value(node)
            return self.module.globals.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and self.cls:
                return self.module.class_attrs.get(self.cls, {}).get(node.attr)
            base = self.value(node.value)
            if isinstance(base, Val):
                return Val(f"{base.path}.{node.attr}")
            return None
        if isinstance(node, ast.Call):
            return self.call_value(node)
        if isinstance(node, ast.IfExp):
            return self.value(node.body) or self.value(node.orelse)
        if isinstance(node, ast.BoolOp):
            return next((v for v in map(self.value, node.values) if v), None)
        if isinstance(node, ast.Tuple):
            values = tuple(self.value(e) for e in node.elts)
            return values if any(values) else None
        return None

    def call_value(self, node: ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in MODULE_CALLS or (name == "import_nccl"):
            return Val(MODULE_CALLS.get(name, "cupy.cuda.nccl"))
        if isinstance(func, ast.Name) and func.id in self.module.functions:
            return self.module.returns.get(func.id)
        target = self.value(func)
        if not isinstance(target, Val):
            return None
        path = self._class_path(target)
        if path in RETURNS:
            return Val(RETURNS[path], instance=True)
        try:
            if inspect.isclass(lookup(path)):
                return Val(path, instance=True)
        except (AttributeError, ImportError):
            pass
        return None

    def _class_path(self, val: Val) -> str:
        """``cupy.cuda.Stream.record`` for ``stream.record`` where stream is a Stream."""
        return val.path

    def bind(self, target, value) -> bool:
        """Record an assignment; True if it gave something a new value."""
        if value is None:
            return False
        if isinstance(target, ast.Tuple) and isinstance(value, tuple):
            return any([self.bind(t, v) for t, v in zip(target.elts, value)])
        if isinstance(value, tuple):
            return False
        if isinstance(target, ast.Name):
            env = self.env
            if self.func is not None and target.id in self.globals_declared():
                env = self.module.globals
            if env.get(target.id) != value:
                env[target.id] = value
                return True
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            and self.cls
        ):
            attrs = self.module.class_attrs.setdefault(self.cls, {})
            if attrs.get(target.attr) != value:
                attrs[target.attr] = value
                return True
        return False

    def globals_declared(self) -> set:
        return {n for g in ast.walk(self.func) if isinstance(g, ast.Global) for n in g.names}

    def body_nodes(self):
        nodes = self.func.body if self.func is not None else self.module.tree.body
        for stmt in nodes:
            yield from _walk_skipping_defs(stmt)

    def assign(self) -> bool:
        changed = False
        for node in self.body_nodes():
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    changed |= self.bind(target, self.value(node.value))
            elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
                changed |= self.bind(node.target, self.value(node.value))
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                changed |= self.bind(node.optional_vars, self.value(node.context_expr))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "cupy":
                        name = alias.asname or alias.name.split(".")[0]
                        path = alias.name if alias.asname else "cupy"
                        changed |= self.bind(ast.Name(name), Val(path))
            elif isinstance(node, ast.ImportFrom):
                changed |= self._import_from(node)
            elif isinstance(node, ast.Return) and self.func is not None and self.cls is None:
                value = self.value(node.value) if node.value is not None else None
                if value is not None and self.module.returns.get(self.func.name) != value:
                    self.module.returns[self.func.name] = value
                    changed = True
        return changed

    def _import_from(self, node: ast.ImportFrom) -> bool:
        changed = False
        if node.level == 0 and (node.module or "").split(".")[0] == "cupy":
            for alias in node.names:
                changed |= self.bind(
                    ast.Name(alias.asname or alias.name), Val(f"{node.module}.{alias.name}")
                )
        elif node.level > 0:  # a distgrad module's global that holds cupy (device._cupy)
            package = self.module.name.split(".")[: -node.level]
            source = ".".join([*package, *([node.module] if node.module else [])])
            other = self.scan.modules.get(source)
            for alias in node.names:
                value = other.globals.get(alias.name) if other else None
                changed |= self.bind(ast.Name(alias.asname or alias.name), value)
        return changed

    def record(self, scan: Scan) -> None:
        where = lambda n: f"{self.module.path.relative_to(ROOT)}:{n.lineno}"  # noqa: E731
        for node in self.body_nodes():
            if isinstance(node, ast.Attribute):
                base = (
                    None
                    if isinstance(node.value, ast.Name) and node.value.id == "self"
                    else self.value(node.value)
                )
                if isinstance(base, Val):
                    scan.uses.append(
                        Use(f"{base.path}.{node.attr}", where(node), None, base.instance)
                    )
                elif isinstance(node.value, ast.Call) and base is None:
                    inner = self.value(node.value.func)
                    if isinstance(inner, Val):
                        scan.unresolved.append(
                            f"{where(node)}: .{node.attr} of what {inner.path}(...) returns "
                            f"(add it to cupy_api.RETURNS)"
                        )
            elif isinstance(node, ast.Call):
                target = self.value(node.func)
                if isinstance(target, Val):
                    shape = (
                        sum(not isinstance(a, ast.Starred) for a in node.args),
                        tuple(k.arg for k in node.keywords if k.arg),
                        any(isinstance(a, ast.Starred) for a in node.args)
                        or any(k.arg is None for k in node.keywords),
                    )
                    owner = node.func.value if isinstance(node.func, ast.Attribute) else None
                    via = (
                        isinstance(owner, ast.AST)
                        and isinstance(self.value(owner), Val)
                        and self.value(owner).instance
                    )
                    scan.uses.append(Use(target.path, where(node), shape, via))
            elif isinstance(node, ast.withitem):
                value = self.value(node.context_expr)
                if isinstance(value, Val) and value.instance:
                    scan.uses.append(
                        Use(f"{value.path}.__enter__", where(node.context_expr), "with")
                    )


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _walk_skipping_defs(node, include_defs: bool = False):
    """``ast.walk`` that does not enter nested functions or classes (scanned on their own);
    with ``include_defs`` it yields them (without entering)."""
    if isinstance(node, _DEFS):
        if include_defs:
            yield node
        return
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if not isinstance(child, _DEFS):
                todo.append(child)
            elif include_defs:
                yield child


class _Scanner:
    def __init__(self, root: Path):
        self.modules = {}
        for path in sorted(root.rglob("*.py")):
            module = _Module(path)
            self.modules[module.name] = module

    def resolvers(self):
        for module in self.modules.values():
            yield _Resolver(self, module, None, None)
            for node in module.tree.body:
                yield from self._in(module, node, None)

    def _in(self, module, node, cls, parent=None):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            resolver = _Resolver(self, module, cls, node, parent)
            yield resolver
            for stmt in node.body:
                for inner in _walk_skipping_defs(stmt, include_defs=True):
                    if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                        yield from self._in(module, inner, cls, resolver)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                yield from self._in(module, item, node.name)


def uses(root: Path = SOURCES) -> Scan:
    """Every use of cupy in distgrad's sources (see the module docstring)."""
    scanner = _Scanner(root)
    resolvers = list(scanner.resolvers())
    for _ in range(6):  # until no assignment gives anything a new value
        if not any([r.assign() for r in resolvers]):
            break
    scan = Scan()
    for r in resolvers:
        r.record(scan)
    nccl_module = root / "distributed" / "nccl.py"
    if nccl_module.exists():
        for node in ast.walk(ast.parse(nccl_module.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"NCCL_[A-Z0-9_]+", node.value) and node.value != "NCCL_ENV":
                    where = f"{nccl_module.relative_to(ROOT)}:{node.lineno}"
                    scan.uses.append(Use(f"cupy.cuda.nccl.{node.value}", where))
    return scan


def xp_uses(root: Path = SOURCES) -> list:
    """Every ``xp.<name>`` / ``<obj>.xp.<name>`` in distgrad (``Use`` paths ``cupy.<name>``),
    with the call shape where it is called."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute) and base.attr != "xp":
                chain.append(base.attr)
                base = base.value
            is_xp = (isinstance(base, ast.Name) and base.id == "xp") or (
                isinstance(base, ast.Attribute) and base.attr == "xp"
            )
            if not is_xp or len(chain) > 1 and id(node) not in calls:
                continue
            call = calls.get(id(node))
            shape = None
            if call is not None:
                shape = (
                    sum(not isinstance(a, ast.Starred) for a in call.args),
                    tuple(k.arg for k in call.keywords if k.arg),
                    any(isinstance(a, ast.Starred) for a in call.args)
                    or any(k.arg is None for k in call.keywords),
                )
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found.append(Use("cupy." + ".".join(reversed(chain)), where, shape))
    return found


def problems(found) -> list:
    """``"where: what"`` for each use the real cupy cannot serve."""
    out = []
    for use in found:
        try:
            obj = lookup(use.path)
        except (AttributeError, ImportError) as exc:
            if use.call is None and documented_instance_attribute(use.path):
                continue
            out.append(f"{use.where}: {use.path}: missing in cupy ({exc})")
            continue
        if isinstance(use.call, tuple):
            why = call_problem(obj, use.call, use.through_instance)
            if why:
                out.append(f"{use.where}: {use.path}{_shape(use.call)}: {why}")
    return out


def _shape(call: tuple) -> str:
    npos, keywords, starred = call
    args = ["_"] * npos + [f"{k}=" for k in keywords] + (["*..."] if starred else [])
    return f"({', '.join(args)})"
