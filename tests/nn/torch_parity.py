"""Helpers for torch-parity tests of modules: copy a torch module's ``state_dict`` into a
distgrad module (unchanged keys), run both on the same inputs, compare outputs and gradients."""

from __future__ import annotations

import numpy as np

import distgrad as dg


def load_torch_state(ours, theirs) -> None:
    """``ours.load_state_dict`` of ``theirs.state_dict()`` with the same keys (strict)."""
    state = {k: dg.tensor(v.detach().cpu().numpy()) for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)


def both(array, torch, requires_grad=True):
    """The same float64 array as a distgrad and a torch tensor."""
    a = np.asarray(array, dtype=np.float64)
    return (
        dg.tensor(a.copy(), requires_grad=requires_grad),
        torch.tensor(a.copy(), requires_grad=requires_grad),
    )


def flat(out) -> list:
    """Every tensor in a nested output (tuples, lists, PackedSequence), in order."""
    if out is None:
        return []
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flat(o)]
    return [out]


def assert_close(a, b, tol=1e-10, what=""):
    """A distgrad tensor (or array) equals a torch tensor to ``tol``."""
    a = a.detach().numpy() if isinstance(a, dg.Tensor) else np.asarray(a)
    b = b.detach().numpy()
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch {b.shape}"
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=what)


def backward_both(outs_dg, outs_t, torch, seed=0):
    """Backpropagate the same random weighting of every floating output on both sides."""
    rng = np.random.default_rng(seed)
    loss_dg, loss_t = 0.0, 0.0
    for a, b in zip(outs_dg, outs_t):
        if not b.is_floating_point() or not b.requires_grad:
            continue
        w = rng.standard_normal(tuple(b.shape))
        loss_dg = loss_dg + (a * dg.tensor(w)).sum()
        loss_t = loss_t + (b * torch.tensor(w)).sum()
    loss_dg.backward()
    loss_t.backward()


def assert_grads_match(ours, theirs, inputs_dg=(), inputs_t=(), tol=1e-10):
    """Parameter gradients (by name) and input gradients agree."""
    params_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        q = params_t[name]
        if q.grad is None:
            assert p.grad is None or not np.any(p.grad.numpy()), name
            continue
        assert p.grad is not None, f"{name}: no gradient"
        assert_close(p.grad, q.grad, tol, f"grad of {name}")
    for i, (a, b) in enumerate(zip(inputs_dg, inputs_t)):
        if b.grad is not None:
            assert_close(a.grad, b.grad, tol, f"grad of input {i}")
