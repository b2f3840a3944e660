"""The training examples' models (MLP with dropout, CNN with BatchNorm and pooling) trained on
the GPU give the CPU's losses and weights to float32 tolerance, from the same weights, batches
and dropout masks (random numbers come from one seeded host stream on both)."""

import copy
import importlib.util

import numpy as np
import pytest

import distgrad as dg
from distgrad.data.datasets import load_digits

from .gpu_helpers import ROOT

pytestmark = pytest.mark.gpu


def example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(model, make_opt, x, y, device, steps=30, batch=64):
    dg.manual_seed(1)  # the same dropout masks on both devices
    model = copy.deepcopy(model).to(device)
    opt = make_opt(model.parameters())
    x, y = x.to(device), y.to(device)
    losses = []
    for step in range(steps):
        lo = (step * batch) % (len(y) - batch)
        loss = dg.nn.functional.cross_entropy(model(x[lo : lo + batch]), y[lo : lo + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with dg.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    return np.array(losses), [p.detach().cpu().numpy() for p in model.parameters()], accuracy


@pytest.mark.parametrize(
    "name, images, make_opt",
    [
        ("train_mlp_digits", False, lambda ps: dg.optim.Adam(ps, lr=2e-3)),
        ("train_cnn_digits", True, lambda ps: dg.optim.AdamW(ps, lr=3e-3, weight_decay=1e-4)),
    ],
)
def test_example_trains_the_same_on_gpu(name, images, make_opt):
    module = example(name)
    dg.manual_seed(0)
    model = module.make_model() if hasattr(module, "make_model") else module.SmallCNN()
    x, y, _, _ = load_digits(as_images=images)
    cpu = train(model, make_opt, x, y, "cpu")
    gpu = train(model, make_opt, x, y, "cuda")
    # float32 sums in another order (cuBLAS and cupy's reductions against OpenBLAS and
    # numpy's), compounded over 30 Adam steps, whose normalised updates magnify rounding
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-3, atol=1e-4)
    for got, want in zip(gpu[1], cpu[1]):
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=2e-3)
    assert abs(gpu[2] - cpu[2]) <= 0.01 and cpu[2] > 0.25  # it learned (chance: 0.1)
