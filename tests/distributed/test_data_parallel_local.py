"""DataParallel in a world of one (no MPI needed): a transparent wrapper."""

import numpy as np

import distgrad
import distgrad.nn as nn
from distgrad.distributed import DataParallel, LocalCommunicator, SyncBatchNorm


def test_world_of_one_is_transparent():
    distgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    dp = DataParallel(model, communicator=LocalCommunicator())
    assert dp.buckets == []  # no hooks, no copies
    x = distgrad.randn(5, 3)
    dp(x).sum().backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        np.testing.assert_allclose(g, p.grad.numpy())
    assert list(dp.state_dict()) == list(model.state_dict())
    with dp.no_sync():
        dp(x).sum().backward()


def test_convert_sync_batchnorm_shares_state():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.BatchNorm1d(4)))
    bn = model[1]
    converted = SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    assert isinstance(model[1], SyncBatchNorm) and isinstance(model[2][0], SyncBatchNorm)
    assert model[1].weight is bn.weight and model[1].running_mean is bn.running_mean
    assert list(model.state_dict()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "2.0.weight",
        "2.0.bias",
        "2.0.running_mean",
        "2.0.running_var",
        "2.0.num_batches_tracked",
    ]
    x = distgrad.randn(6, 4)
    np.testing.assert_allclose(model[1](x).detach().numpy(), bn(x).detach().numpy())
