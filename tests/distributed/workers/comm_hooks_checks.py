"""DDP communication hooks and the hierarchical allreduce on N real ranks.

``python comm_hooks_checks.py hooks``: on every rank, several DDP copies of one model (one
parameter per bucket, so hooks run per bucket during backward) train on the rank's own
batches; the exact average of the ranks' local gradients comes from a plain copy of the model
and an all-gather. Checked:
- ``allreduce_hook`` gives parameters bitwise equal to DDP without a hook (4 steps, two of
  them accumulating a first micro-batch under ``no_sync``);
- ``fp16_compress_hook`` / ``bf16_compress_hook``: within world * unit roundoff (2^-11, 2^-8)
  of the exact average, relative to its largest entry, and no inf at gradients of 6e4;
- ``powerSGD_hook``: after the uncompressed warm-up steps, equal (1e-10) to the exact average
  on gradients of rank <= r (batch of one per rank, r = world); at r = 1 the error-feedback
  residual of each bucket equals its input minus its result, and the next input equals the
  local gradient plus that residual;
- ``batched_powerSGD_hook``: exact at full rank (r >= the bucket matrix's side), compressing at
  r = 1;
- ``StepStats.sent_bytes`` equals ``predicted_step_bytes`` for every hook and step, and
  ``compression_error`` is 0 for allreduce, > 0 for the compressing hooks;
- registering twice, after the first backward, or a hook returning no Future: PyTorch's errors.

``python comm_hooks_checks.py hier`` (4 ranks, DISTGRAD_FAKE_NODES=2): the hierarchical
allreduce equals the flat one (float64: bitwise on integer sums, 1e-15 otherwise; uneven and
non-contiguous arrays, several in flight), counts the predicted bytes at each level, DDP picks
it by itself and trains like the flat DDP (1e-15), also with the fp16 hook.
Each check prints a line starting ``OK``; the last line is ``OK all``.
"""

import sys

import numpy as np

import distgrad
import distgrad.distributed as dist
import distgrad.nn as nn
from distgrad.distributed import DistributedDataParallel as DDP
from distgrad.distributed import hierarchical
from distgrad.distributed.algorithms.ddp_comm_hooks import default_hooks as hooks
from distgrad.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd
from distgrad.distributed.algorithms.ddp_comm_hooks import predicted_step_bytes
from distgrad.distributed.traffic import Tally
from distgrad.futures import Future

dist.init()
W, R = dist.world_size(), dist.rank()
COMM = dist.get_communicator()
TINY = 1e-9  # MB: one parameter per bucket


def make_model(dtype, seed=3, hidden=8):
    distgrad.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, 5))
    return model.to(dtype)


def batch(step, rank, dtype, size=4):
    rng = np.random.default_rng(100 * step + rank)
    x = distgrad.tensor(rng.normal(size=(size, 6)), dtype=dtype)
    y = distgrad.tensor(rng.normal(size=(size, 5)), dtype=dtype)
    return x, y


def loss_of(model, x, y):
    return ((model(x) - y) ** 2).sum()


def exact_average(plain, x, y):
    """The average over ranks of the local gradients (float64), by parameter name."""
    plain.zero_grad()
    loss_of(plain, x, y).backward()
    out = {}
    for name, p in plain.named_parameters():
        local = p.grad.array.astype(np.float64).reshape(-1)
        every = np.empty((W, local.size))
        COMM.allgather(local, every, async_op=False)
        out[name] = every.mean(axis=0).reshape(p.shape)
    return out


def copy_params(src, dst):
    for a, b in zip(src.parameters(), dst.parameters()):
        b.array[...] = a.array
        b.bump_version()


def shapes(ddp):
    return [[tuple(p.shape) for p in b.params] for b in ddp.buckets]


def check_bytes(ddp, hook, itemsize, **kwargs):
    stats = ddp.last_step_stats
    want = predicted_step_bytes(shapes(ddp), itemsize, hook, **kwargs)["total"]
    assert stats.sent_bytes == want, (hook, stats.sent_bytes, want, stats.sent_bytes_by_group)
    return want


# ---- identity: allreduce_hook is DDP itself, bitwise --------------------------------------
def identity():
    plain_ddp = DDP(make_model(distgrad.float64), bucket_cap_mb=TINY, first_bucket_mb=TINY)
    hooked = DDP(make_model(distgrad.float64), bucket_cap_mb=TINY, first_bucket_mb=TINY)
    hooked.register_comm_hook(None, hooks.allreduce_hook)
    opts = [distgrad.optim.SGD(m.parameters(), lr=0.1) for m in (plain_ddp, hooked)]
    for step in range(4):
        x, y = batch(step, R, distgrad.float64)
        x2, y2 = batch(step + 50, R, distgrad.float64)
        for ddp, opt in zip((plain_ddp, hooked), opts):
            opt.zero_grad()
            if step % 2:  # gradient accumulation: the first micro-batch under no_sync
                with ddp.no_sync():
                    loss_of(ddp, x2, y2).backward()
            loss_of(ddp, x, y).backward()
            opt.step()
        check_bytes(hooked, "allreduce", 8)
        check_bytes(plain_ddp, None, 8)
        assert hooked.last_step_stats.compression_error == 0.0
        assert hooked.last_step_stats.launched_in_backward >= len(hooked.buckets) - 1
    for a, b in zip(plain_ddp.parameters(), hooked.parameters()):
        assert a.array.tobytes() == b.array.tobytes(), "allreduce_hook differs from no hook"
    print(f"OK identity bitwise, {len(hooked.buckets)} buckets")


# ---- fp16 / bf16 ---------------------------------------------------------------------------
def compressed(hook, unit, name):
    model = make_model(distgrad.float32)
    plain = make_model(distgrad.float32)
    ddp = DDP(model, bucket_cap_mb=TINY, first_bucket_mb=TINY)
    ddp.register_comm_hook(None, hook)
    worst = 0.0
    for step in range(3):
        x, y = batch(step, R, distgrad.float32)
        copy_params(model, plain)
        exact = exact_average(plain, x, y)
        ddp.zero_grad()
        loss_of(ddp, x, y).backward()
        scale = max(np.abs(e).max() for e in exact.values())
        for n, p in model.named_parameters():
            diff = np.abs(p.grad.array.astype(np.float64) - exact[n]).max() / scale
            worst = max(worst, diff)
        check_bytes(ddp, name, 4)
        err = ddp.last_step_stats.compression_error
        assert 0 < err < 2 * unit, (name, err)
        for p in model.parameters():
            p.array[...] -= 0.05 * p.grad.array
    assert worst <= W * unit, (name, worst, W * unit)
    print(f"OK {name} max relative error {worst:.3g} <= {W} x {unit:.3g}")


class Big(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(distgrad.zeros(1000))

    def forward(self, signs):
        return (self.w * signs).sum() * 6e4


def no_overflow(hook, unit, name):
    ddp = DDP(Big(), bucket_cap_mb=TINY, first_bucket_mb=TINY)
    ddp.register_comm_hook(None, hook)
    signs = distgrad.tensor(np.where(np.arange(1000) % 3 == 0, -1.0, 1.0).astype(np.float32))
    ddp(signs).backward()
    grad = ddp.module.w.grad.array
    assert np.isfinite(grad).all(), (name, "inf in the reduced gradient")
    want = 6e4 * signs.array
    assert np.abs(grad - want).max() <= W * unit * 6e4, (name, grad[:4])
    print(f"OK {name} no overflow at 6e4 x {W} ranks")


# ---- PowerSGD ------------------------------------------------------------------------------
def powersgd_exact():
    model = make_model(distgrad.float64, hidden=7)
    plain = make_model(distgrad.float64, hidden=7)
    ddp = DDP(model, bucket_cap_mb=TINY, first_bucket_mb=TINY)
    state = psgd.PowerSGDState(
        None, matrix_approximation_rank=W, start_powerSGD_iter=2, min_compression_rate=0
    )
    ddp.register_comm_hook(state, psgd.powerSGD_hook)
    worst = 0.0
    for step in range(6):
        x, y = batch(step, R, distgrad.float64, size=1)  # rank-1 gradients per rank
        copy_params(model, plain)
        exact = exact_average(plain, x, y)
        ddp.zero_grad()
        loss_of(ddp, x, y).backward()
        for n, p in model.named_parameters():
            scale = np.abs(exact[n]).max()
            worst = max(worst, np.abs(p.grad.array - exact[n]).max() / scale)
        kwargs = dict(matrix_approximation_rank=W, min_compression_rate=0, compressing=step >= 2)
        check_bytes(ddp, "powerSGD", 8, **kwargs)
        for p in model.parameters():
            p.array[...] -= 0.05 * p.grad.array
    assert worst < 1e-10, worst
    print(f"OK powerSGD exact on rank <= {W} gradients: {worst:.3g}")


def powersgd_residual():
    model = make_model(distgrad.float64, hidden=9)
    plain = make_model(distgrad.float64, hidden=9)
    ddp = DDP(model, bucket_cap_mb=TINY, first_bucket_mb=TINY)
    state = psgd.PowerSGDState(None, matrix_approximation_rank=1, start_powerSGD_iter=2)
    seen = {}

    def recording(state, bucket):
        before = bucket.buffer().array.copy()
        future = psgd.powerSGD_hook(state, bucket)

        def keep(fut):
            seen[bucket.index()] = (before, fut.value().array.copy())
            return fut.value()

        return future.then(keep)

    ddp.register_comm_hook(state, recording)
    previous = None
    errors = []
    for step in range(5):
        x, y = batch(step, R, distgrad.float64)
        copy_params(model, plain)
        plain.zero_grad()
        loss_of(plain, x, y).backward()
        grads = dict(zip([id(p) for p in model.parameters()], plain.parameters()))
        local = [
            np.concatenate([grads[id(p)].grad.array.reshape(-1) for p in b.params])
            for b in ddp.buckets
        ]
        ddp.zero_grad()
        loss_of(ddp, x, y).backward()
        errors.append(ddp.last_step_stats.compression_error)
        check_bytes(ddp, "powerSGD", 8, compressing=step >= 2)
        for i, (before, after) in seen.items():
            # the hook receives this rank's gradient; PowerSGD adds the last residual to it
            assert np.allclose(before, local[i], rtol=0, atol=1e-14), "input is not the gradient"
            if step >= 2:
                carried = previous[i] if previous and i in previous else 0.0
                residual = state.error_dict[i]
                assert np.array_equal(residual, (before + carried) - after), "residual"
        previous = {i: e.copy() for i, e in state.error_dict.items()}
        for p in model.parameters():
            p.array[...] -= 0.05 * p.grad.array
    assert any(np.abs(e).max() > 1e-6 for e in state.error_dict.values()), "no residual"
    assert errors[0] == 0.0 and all(e > 0 for e in errors[2:]), errors
    print(f"OK powerSGD error feedback, compression error {errors[-1]:.3g}")


def batched_powersgd():
    """Full rank (r >= the bucket matrix's side): exact; rank 1: compresses (error > 0)."""
    for rank in (8, 1):
        model = make_model(distgrad.float64, hidden=7)
        plain = make_model(distgrad.float64, hidden=7)
        ddp = DDP(model, bucket_cap_mb=TINY, first_bucket_mb=TINY)
        state = psgd.PowerSGDState(None, matrix_approximation_rank=rank, start_powerSGD_iter=2)
        ddp.register_comm_hook(state, psgd.batched_powerSGD_hook)
        worst = 0.0
        for step in range(4):
            x, y = batch(step, R, distgrad.float64)
            copy_params(model, plain)
            exact = exact_average(plain, x, y)
            ddp.zero_grad()
            loss_of(ddp, x, y).backward()
            for n, p in model.named_parameters():
                worst = max(worst, np.abs(p.grad.array - exact[n]).max() / np.abs(exact[n]).max())
            kwargs = dict(matrix_approximation_rank=rank, compressing=step >= 2)
            check_bytes(ddp, "batched_powerSGD", 8, **kwargs)
            for p in model.parameters():
                p.array[...] -= 0.05 * p.grad.array
        error = ddp.last_step_stats.compression_error
        if rank == 8:
            assert worst < 1e-10, worst
        else:
            assert error > 0 and worst > 1e-6, (error, worst)
    print(f"OK batched powerSGD exact at full rank, compression error {error:.3g} at rank 1")


def api_errors():
    ddp = DDP(make_model(distgrad.float64), bucket_cap_mb=TINY, first_bucket_mb=TINY)
    ddp.register_comm_hook(None, hooks.allreduce_hook)
    try:
        ddp.register_comm_hook(None, hooks.allreduce_hook)
    except RuntimeError as error:
        assert "can only be called once" in str(error)
    else:
        raise AssertionError("registered twice")
    late = DDP(make_model(distgrad.float64))
    x, y = batch(0, R, distgrad.float64)
    loss_of(late, x, y).backward()
    try:
        late.register_comm_hook(None, hooks.allreduce_hook)
    except RuntimeError as error:
        assert "before the first backward" in str(error)
    else:
        raise AssertionError("registered after backward")
    try:
        late.register_comm_hook(None, "not callable")
    except TypeError as error:
        assert "must be callable" in str(error)
    bad = DDP(make_model(distgrad.float64))
    bad.register_comm_hook(None, lambda state, bucket: bucket.buffer())
    try:
        loss_of(bad, x, y).backward()
    except TypeError as error:
        assert "must return a distgrad.futures.Future" in str(error), error
    else:
        raise AssertionError("a hook returning a Tensor was accepted")
    done = Future()
    done.set_result(3)
    assert done.done() and done.wait() == 3 and done.then(lambda f: f.value() + 1).wait() == 4
    print("OK errors")


# ---- hierarchical --------------------------------------------------------------------------
def hier():
    L = 2
    rng = np.random.default_rng(R)
    cases = {
        "integers": rng.integers(-1000, 1000, 1001).astype(np.float64),
        "floats": rng.normal(size=(37, 5)),
        "strided": rng.normal(size=(40, 6))[:, ::2],
        "float32": rng.normal(size=513).astype(np.float32),
    }
    for name, array in cases.items():
        flat_copy = np.ascontiguousarray(array)
        COMM.allreduce(flat_copy, async_op=False)
        with Tally() as tally:
            hierarchical.all_reduce(array)
        if name == "integers":
            assert np.array_equal(array, flat_copy), name
        else:
            tol = 1e-15 if array.dtype == np.float64 else 1e-6
            assert np.abs(array - flat_copy).max() <= tol * np.abs(flat_copy).max(), name
        want = hierarchical.hierarchical_bytes(array.size, array.itemsize, L)
        intra = sum(v for k, v in tally.by_label.items() if "intra-node" in k)
        inter = sum(v for k, v in tally.by_label.items() if "inter-node" in k)
        assert (intra, inter) == (want["intra"], want["inter"]), (name, intra, inter, want)
    arrays = [rng.normal(size=n) for n in (5, 300, 17)]
    refs = [a.copy() for a in arrays]
    for a in refs:
        COMM.allreduce(a, async_op=False)
    handles = [hierarchical.all_reduce(a, async_op=True) for a in arrays]
    for h in reversed(handles):
        h.wait()
    for a, ref in zip(arrays, refs):
        assert np.abs(a - ref).max() <= 1e-15 * np.abs(ref).max()
    print("OK hierarchical all_reduce equals flat; bytes per level as predicted")

    for hook, name in ((None, None), (hooks.fp16_compress_hook, "fp16")):
        auto = DDP(make_model(distgrad.float64), bucket_cap_mb=TINY, first_bucket_mb=TINY)
        flat = DDP(
            make_model(distgrad.float64),
            bucket_cap_mb=TINY,
            first_bucket_mb=TINY,
            hierarchical_allreduce=False,
        )
        assert auto.hierarchical is not None and flat.hierarchical is None
        if hook is not None:
            auto.register_comm_hook(None, hook)
            flat.register_comm_hook(None, hook)
        opts = [distgrad.optim.SGD(m.parameters(), lr=0.1) for m in (auto, flat)]
        for step in range(3):
            x, y = batch(step, R, distgrad.float64)
            for ddp, opt in zip((auto, flat), opts):
                opt.zero_grad()
                loss_of(ddp, x, y).backward()
                opt.step()
            want = predicted_step_bytes(shapes(auto), 8, name, ranks_per_node=L)
            got = auto.last_step_stats
            assert got.sent_bytes == want["total"], (got.sent_bytes, want)
            inter = sum(v for k, v in got.sent_bytes_by_group.items() if "inter-node" in k)
            assert inter == want["inter"], (inter, want)
        diff = max(
            np.abs(a.array - b.array).max() for a, b in zip(auto.parameters(), flat.parameters())
        )
        assert diff <= (1e-15 if hook is None else 1e-3), (name, diff)
        print(f"OK DDP hierarchical ({name or 'no hook'}) equals flat: {diff:.3g}")


which = sys.argv[1]
if which == "hooks":
    identity()
    compressed(hooks.fp16_compress_hook, 2.0**-11, "fp16")
    compressed(hooks.bf16_compress_hook, 2.0**-8, "bf16")
    no_overflow(hooks.fp16_compress_hook, 2.0**-11, "fp16")
    no_overflow(hooks.bf16_compress_hook, 2.0**-8, "bf16")
    powersgd_exact()
    powersgd_residual()
    batched_powersgd()
    api_errors()
elif which == "hier":
    hier()
print("OK all")
