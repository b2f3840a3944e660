"""distgrad's GPU code against the real cupy API, without a GPU: every cupy / cupy.cuda /
cupy.cuda.nccl name it uses exists and accepts the call it makes, every ``xp.<name>`` of the
ops exists in cupy, and the fake cupy/NCCL of the CPU logic tests defines nothing the real one
lacks. Runs where the real ``cupy-cuda12x`` (+ ``nvidia-nccl-cu12``) is importable:
``make cupy-api`` installs them into ``.cupy-site/`` and runs this file (see README.md here)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from tests.distributed import fake_cuda

from . import cupy_api

cupy = pytest.importorskip("cupy", reason="needs the real cupy package (make cupy-api)")

#: The real counterpart of each stand-in in tests/distributed/fake_cuda.py.
FAKES = {
    "FakeCupy": "cupy",
    "FakeCuda": "cupy.cuda",
    "FakeDevice": "cupy.cuda.Device",
    "FakeStream": "cupy.cuda.Stream",
    "FakeEvent": "cupy.cuda.Event",
    "FakeArray": "cupy.ndarray",
    "FakeNccl": "cupy.cuda.nccl",
    "FakeNcclComm": "cupy.cuda.nccl.NcclCommunicator",
}


@pytest.fixture(scope="module")
def scan():
    return cupy_api.uses()


def test_the_scan_finds_the_gpu_code(scan):
    """The scan must see the known entry points, or it checks nothing."""
    paths = {u.path for u in scan.uses}
    for expected in (
        "cupy.cuda.nccl.NcclCommunicator",
        "cupy.cuda.nccl.NcclCommunicator.allReduce",
        "cupy.cuda.Stream.begin_capture",
        "cupy.cuda.graph.Graph.launch",
        "cupy.cuda.runtime.getDeviceCount",
        "cupy.cuda.nccl.NCCL_FLOAT32",
    ):
        assert expected in paths, f"{expected} not found: the scan misses the GPU code"
    assert len(cupy_api.xp_uses()) > 100


def test_every_cupy_use_exists_with_its_call_signature(scan):
    assert scan.unresolved == [], "\n".join(scan.unresolved)
    problems = cupy_api.problems(scan.uses)
    assert problems == [], "\n".join(problems)


def test_every_xp_name_exists_in_cupy():
    problems = cupy_api.problems(cupy_api.xp_uses())
    assert problems == [], "\n".join(problems)


def test_the_return_table_names_real_functions_and_classes():
    for function, returned in cupy_api.RETURNS.items():
        assert callable(cupy_api.lookup(function)), function
        assert inspect.isclass(cupy_api.lookup(returned)), returned


def test_the_checker_can_fail():
    """A missing name, a wrong keyword and too many arguments are reported."""
    Use = cupy_api.Use
    bad = [
        Use("cupy.cuda.no_such_thing", "a"),
        Use("cupy.cuda.Stream", "b", (0, ("nonblocking",), False)),
        Use("cupy.cuda.nccl.NcclCommunicator.allReduce", "c", (5, (), False), True),
        Use("cupy.cuda.Stream.wait_event", "d", (2, (), False), True),
    ]
    found = cupy_api.problems(bad)
    assert [p.split(":")[0] for p in found] == ["a", "b", "c", "d"], found
    good = [
        Use("cupy.cuda.Stream.ptr", "e"),  # an instance attribute the docstring documents
        Use("cupy.cuda.nccl.NcclCommunicator.allReduce", "f", (6, (), False), True),
    ]
    assert cupy_api.problems(good) == []


# ---- the fakes ----------------------------------------------------------------------------------
def _fake_classes():
    return {
        name: cls
        for name, cls in vars(fake_cuda).items()
        if inspect.isclass(cls) and name.startswith("Fake") and cls.__module__ == fake_cuda.__name__
    }


def test_every_fake_has_a_real_counterpart():
    assert set(_fake_classes()) == set(FAKES)


def _positional(sig: inspect.Signature) -> list:
    return [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]


def _signature_problem(fake_fn, real, fake_method: bool, through_instance: bool) -> str | None:
    """The fake must be callable the way the real one is: the real one accepts the fake's
    required positional count, and each optional parameter by the fake's name or at its
    position."""
    fake_sig = inspect.signature(fake_fn)
    params = list(fake_sig.parameters.values())
    if fake_method and params and params[0].name == "self":
        params = params[1:]
    real_sig = cupy_api.signature(real, drop_self=through_instance)
    if inspect.isclass(real):
        real_sig = cupy_api.signature(real) or cupy_api.signature(real.__init__, True)
    if real_sig is None:
        return None
    required = [p for p in params if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    try:
        real_sig.bind(*[None] * len(required))
    except TypeError as exc:
        return f"takes {len(required)} positional argument(s) but the real one: {exc} {real_sig}"
    real_names = set(real_sig.parameters)
    real_positional = _positional(real_sig)
    for i, p in enumerate(params):
        if p.default is p.empty or p.name in real_names:
            continue
        if p.kind is p.KEYWORD_ONLY or i >= len(real_positional):
            return f"has parameter {p.name!r}, which the real {real_sig} lacks"
    return None


def _fake_members(cls):
    """(name, value) of what a fake class defines for its users (not ``_`` names)."""
    return [(n, v) for n, v in vars(cls).items() if not n.startswith("_")]


def test_fakes_define_nothing_the_real_package_lacks():
    problems = []
    classes = _fake_classes()
    for name, cls in classes.items():
        real_path = FAKES[name]
        real = cupy_api.lookup(real_path)
        module_like = not inspect.isclass(real)  # FakeCupy, FakeCuda, FakeNccl stand for modules
        if "__init__" in vars(cls) and not module_like:
            constructed_by = _constructor_of(name)
            if constructed_by is None:
                why = _signature_problem(cls.__init__, real, True, through_instance=False)
                if why:
                    problems.append(f"{name}(): {why}")
        for member, value in _fake_members(cls):
            path = f"{real_path}.{member}"
            try:
                real_member = cupy_api.lookup(path)
            except AttributeError:
                if not cupy_api.documented_instance_attribute(path):
                    problems.append(f"{name}.{member}: {path} does not exist")
                continue
            fn = value.__func__ if isinstance(value, staticmethod) else value
            if inspect.isfunction(fn):
                method = not isinstance(value, staticmethod)
                why = _signature_problem(fn, real_member, method, through_instance=not module_like)
                if why:
                    problems.append(f"{name}.{member}: {why}")
    # what the fakes hold per instance: cupy.cuda.runtime's functions, NCCL's constants
    cuda = fake_cuda.FakeCuda([])
    for attr, value in vars(cuda).items():
        if isinstance(value, SimpleNamespace):
            for key in vars(value):
                if not _exists(f"cupy.cuda.{attr}.{key}"):
                    problems.append(f"FakeCuda.{attr}.{key}: cupy.cuda.{attr}.{key} does not exist")
    nccl = fake_cuda.FakeNccl([])
    for attr in vars(nccl):
        if attr.isupper() and not _exists(f"cupy.cuda.nccl.{attr}"):
            problems.append(f"FakeNccl.{attr}: cupy.cuda.nccl.{attr} does not exist")
    assert problems == [], "\n".join(problems)


def _constructor_of(fake_name: str) -> str | None:
    """Fakes built by a factory method of another fake (FakeCuda.Stream -> FakeStream) are
    checked through that method, whose signature is the one users see."""
    return {
        "FakeStream": "FakeCuda.Stream",
        "FakeEvent": "FakeCuda.Event",
        "FakeDevice": "FakeCuda.Device",
        "FakeNcclComm": "FakeNccl.NcclCommunicator",
    }.get(fake_name)


def _exists(path: str) -> bool:
    try:
        cupy_api.lookup(path)
        return True
    except AttributeError:
        return False
