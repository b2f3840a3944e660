"""fully_shard's buffers without processes: the parameter-major gathered layout (full parameters
as views), the per-parameter reduce-scatter input (the engine's gradient itself when its rows
divide, else a padded copy), the padding of the rank-major buffer, and ``host_memory``."""

import os
import subprocess
import sys

import numpy as np

import distgrad
from distgrad.distributed.reducer import ShardBucket, ShardLayout


def test_gather_pieces_put_each_rank_rows_where_the_whole_parameter_is_a_view():
    shapes = [(5, 3), (5,), ()]
    world = 2
    layout = ShardLayout(shapes, world)
    rng = np.random.default_rng(0)
    wholes = [rng.normal(size=s) for s in shapes]
    flat = np.full(world * layout.block, np.nan)
    for rank in range(world):  # what an all-gather of each rank's block does
        block = np.zeros(layout.block)
        for i, whole in enumerate(wholes):
            start, stop = layout.owned_rows(i, rank)
            rows = whole.reshape(layout.dim0[i], layout.inner[i])[start:stop].reshape(-1)
            block[layout.offsets[i] : layout.offsets[i] + rows.size] = rows
        for send, recv in layout.gather_pieces(block, flat):
            n = send.size
            recv[rank * n : (rank + 1) * n] = send
    for i, whole in enumerate(wholes):
        view = layout.full_view(flat, i)
        assert view.shape == whole.shape and np.shares_memory(view, flat)
        np.testing.assert_array_equal(view, whole)


def test_zero_padding_zeroes_exactly_the_rows_beyond_each_parameter():
    layout = ShardLayout([(5, 3), (4,), (7, 2)], 3)
    out = np.full((3, layout.block), 7.0)
    layout.zero_padding(out)
    for i in range(3):
        rows, inner, d = layout.rows[i], layout.inner[i], layout.dim0[i]
        cols = out[:, layout.offsets[i] : layout.offsets[i + 1]].reshape(3 * rows, inner)
        assert (cols[:d] == 7.0).all() and (cols[d:] == 0).all()


def _bucket(params, world=2):
    layout = ShardLayout([tuple(p.shape) for p in params], world)
    got = []
    bucket = ShardBucket(
        params, [str(i) for i in range(len(params))], layout, 0, got.append, per_parameter=True
    )
    bucket.pre_scale = 0.5
    return bucket, layout


def _fill_from_hooks(bucket, params, keep=None):
    """Fill the bucket from post-accumulate-grad hooks, as the reducer does; ``keep``: a list
    a hook registered first appends each gradient tensor to (a user holding it)."""
    for slot, p in enumerate(params):
        if keep is not None:
            p.register_post_accumulate_grad_hook(lambda t: keep.append(t.grad))
        p.register_post_accumulate_grad_hook(lambda t, slot=slot: bucket.fill(slot, 1.0, True))


def test_per_parameter_fill_reduces_the_engines_gradient_itself_or_a_padded_copy():
    distgrad.manual_seed(0)
    even = distgrad.nn.Parameter(distgrad.randn(4, 3, dtype=distgrad.float64))
    odd = distgrad.nn.Parameter(distgrad.randn(3, 2, dtype=distgrad.float64))
    bucket, _ = _bucket([even, odd])
    _fill_from_hooks(bucket, [even, odd])
    x = distgrad.randn(5, 4, dtype=distgrad.float64)
    y = distgrad.randn(5, 3, dtype=distgrad.float64)
    ((x @ even).square().sum() + (y @ odd).square().sum()).backward()
    g_even = 2 * x.numpy().T @ (x.numpy() @ even.detach().numpy())
    g_odd = 2 * y.numpy().T @ (y.numpy() @ odd.detach().numpy())
    assert even.grad is None and odd.grad is None
    assert bucket.borrowed == [True, False] and bucket.deferred == [True, False]
    np.testing.assert_allclose(bucket.sends[0], g_even.reshape(-1), rtol=1e-13)  # scaled later
    padded = bucket.sends[1].reshape(4, 2)  # 3 rows padded to 2 x 2, scaled now
    np.testing.assert_allclose(padded[:3], 0.5 * g_odd, rtol=1e-13)
    assert (padded[3:] == 0).all()
    # what rank 0 receives from a world of two equal ranks: each block's rows twice
    recv = np.concatenate([2 * s.reshape(2, -1)[0] for s in bucket.sends])
    bucket.recv = recv
    bucket.write_back()
    (block,) = bucket.on_reduced.__self__
    np.testing.assert_allclose(block[:6], g_even[:2].reshape(-1), rtol=1e-13)
    np.testing.assert_allclose(block[6:], g_odd[:2].reshape(-1), rtol=1e-13)


def test_a_gradient_someone_else_holds_is_sent_but_never_changed():
    distgrad.manual_seed(0)
    p = distgrad.nn.Parameter(distgrad.randn(4, 3, dtype=distgrad.float64))
    bucket, _ = _bucket([p])
    keep = []
    _fill_from_hooks(bucket, [p], keep)
    x = distgrad.randn(5, 4, dtype=distgrad.float64)
    (x @ p).square().sum().backward()
    expected = 2 * x.numpy().T @ (x.numpy() @ p.detach().numpy())
    held = keep[0]
    assert np.shares_memory(bucket.sends[0], held.array)
    np.testing.assert_allclose(held.numpy(), expected, rtol=1e-13)  # not scaled in place
    p.grad = distgrad.ones(4, 3, dtype=distgrad.float64)  # a second contribution
    bucket.ready[0] = True
    bucket.fill(0, 1.0, True)
    np.testing.assert_allclose(held.numpy(), expected, rtol=1e-13)  # copied before adding
    assert not np.shares_memory(bucket.sends[0], held.array)
    np.testing.assert_allclose(bucket.sends[0], (expected + 1).reshape(-1), rtol=1e-13)  # unscaled


def test_unused_then_used_gradient_adds_scaled():
    p = distgrad.nn.Parameter(distgrad.randn(2, 2, dtype=distgrad.float64))
    bucket, _ = _bucket([p])
    bucket.fill(0, 1.0, False)  # unused: zeros
    assert (bucket.sends[0] == 0).all() and bucket.deferred == [False]
    bucket.ready[0] = True  # a second contribution adds, scaled as the first
    p.sum().backward()
    bucket.fill(0, 1.0, True)
    np.testing.assert_array_equal(bucket.sends[0], np.full(4, 0.5))


def test_host_memory_cache_is_on_by_default_on_glibc_and_can_be_turned_off():
    code = (
        "import platform; from distgrad.distributed.host_memory import keep_freed_host_memory; "
        "print(keep_freed_host_memory(), platform.libc_ver()[0] == 'glibc')"
    )
    for value, expect_on in (("1", True), ("0", False)):
        env = dict(os.environ, DISTGRAD_HOST_MEMORY_CACHE=value)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        on, glibc = out[0] == "True", out[1] == "True"
        assert on == (expect_on and glibc), out
