"""DataParallel in a world of one (no MPI needed): a transparent wrapper."""

import numpy as np
import pytest

import distgrad
import distgrad.nn as nn
from distgrad.distributed import (
    DataParallel,
    DistributedDataParallel,
    LocalCommunicator,
    SyncBatchNorm,
)


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
    assert list(dp.state_dict()) == ["module." + k for k in model.state_dict()]
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


def test_torch_names_and_arguments():
    model = nn.Linear(3, 2)
    ddp = DistributedDataParallel(
        model,
        device_ids=[0],
        output_device=0,
        find_unused_parameters=True,
        gradient_as_bucket_view=True,
        static_graph=True,
        process_group=LocalCommunicator(),
    )
    assert DataParallel is DistributedDataParallel and ddp.module is model
    assert [n for n, _ in ddp.named_parameters()] == ["module.weight", "module.bias"]


def test_state_dict_interchanges_with_torch_ddp():
    torch = pytest.importorskip("torch")
    dist_t = pytest.importorskip("torch.distributed")
    if not dist_t.is_initialized():
        dist_t.init_process_group("gloo", store=dist_t.HashStore(), rank=0, world_size=1)
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    ).double()
    tddp = torch.nn.parallel.DistributedDataParallel(tmodel)
    theirs = tddp.state_dict()
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    ddp = DistributedDataParallel(model, communicator=LocalCommunicator())
    ours = ddp.state_dict()
    assert list(ours) == list(theirs)  # same keys, same order
    ddp.load_state_dict({k: distgrad.tensor(v.detach().numpy()) for k, v in theirs.items()})
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k].numpy(), v.detach().numpy())
    with torch.no_grad():
        for p in model.parameters():
            p.array[...] += 1.0
    tddp.load_state_dict(
        {k: torch.from_numpy(v.numpy().copy()) for k, v in ddp.state_dict().items()}
    )
    np.testing.assert_array_equal(
        tddp.module[0].weight.detach().numpy(), model[0].weight.detach().numpy()
    )
