"""nn.Module: registration, iteration, state dicts, modes, devices/dtypes, hooks, repr."""

import copy

import numpy as np
import pytest

import distgrad as dg
from distgrad import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)
        self.register_buffer("steps", dg.tensor(0))
        self.register_buffer("scratch", dg.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc2(dg.relu(self.bn(self.fc1(x))))


def test_attribute_assignment_registers_parameters_buffers_and_modules():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "fc1.weight",
        "fc1.bias",
        "bn.weight",
        "bn.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "steps",
        "scratch",
        "bn.running_mean",
        "bn.running_var",
        "bn.num_batches_tracked",
    ]
    assert [n for n, _ in net.named_children()] == ["fc1", "bn", "fc2"]
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "bn", "fc2"]
    assert isinstance(net.fc1.weight, nn.Parameter) and net.fc1.weight.requires_grad


def test_shared_parameters_are_listed_once():
    net = nn.Module()
    lin = nn.Linear(2, 2)
    net.a, net.b = lin, lin
    assert len(list(net.parameters())) == 2


def test_state_dict_keys_and_storage_sharing():
    net = Net()
    sd = net.state_dict()
    assert "scratch" not in sd and "steps" in sd and "bn.running_var" in sd
    assert not sd["fc1.weight"].requires_grad
    assert np.shares_memory(sd["fc1.weight"].numpy(), net.fc1.weight.array)


def test_load_state_dict_roundtrip():
    a, b = Net(), Net()
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for (_n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_load_state_dict_errors_name_keys_and_shapes_and_change_nothing():
    net = Net()
    before = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    bad = Net().state_dict()
    bad["fc2.weight"] = dg.zeros(5, 8)
    bad["extra.weight"] = dg.zeros(1)
    del bad["fc1.bias"]
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(bad)
    msg = str(err.value)
    assert 'Missing key(s) in state_dict: "fc1.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert (
        "size mismatch for fc2.weight: copying a param with shape [5, 8] from checkpoint, "
        "the shape in current model is [3, 8]" in msg
    )
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_load_state_dict_non_strict_reports_keys():
    net = Net()
    sd = net.state_dict()
    del sd["fc1.bias"]
    sd["other"] = dg.zeros(1)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["fc1.bias"] and unexpected == ["other"]


def test_train_eval_propagate():
    net = Net()
    net.eval()
    assert not net.training and not net.bn.training
    net.train()
    assert net.bn.training


def test_zero_grad_sets_none_or_zero():
    net = Net()
    net(dg.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(float(abs(p.grad).sum()) == 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_double_keeps_parameter_identity_and_casts_floats_only():
    net = Net()
    w = net.fc1.weight
    net.double()
    assert net.fc1.weight is w and w.dtype is dg.float64
    assert net.steps.dtype is dg.int64 and net.bn.running_mean.dtype is dg.float64
    with pytest.raises(TypeError, match="floating point"):
        net.to(dg.int32)


def test_forward_hooks_and_removal():
    net = Net()
    calls = []
    h1 = net.fc1.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    h2 = net.fc1.register_forward_hook(lambda m, args, out: out * 0)
    out = net.fc1(dg.randn(2, 4))
    assert calls == ["pre"] and float(abs(out).sum()) == 0
    h1.remove()
    h2.remove()
    assert float(abs(net.fc1(dg.randn(2, 4))).sum()) > 0 and calls == ["pre"]


def test_apply_and_requires_grad_():
    net = Net()
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "BatchNorm1d", "Linear", "Net"]
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_repr_shows_the_tree():
    text = repr(Net())
    assert "(fc1): Linear(in_features=4, out_features=8, bias=True)" in text
    assert "(bn): BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=True" in text


def test_assigning_wrong_types_raises():
    net = Net()
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'weight'"):
        net.fc1.weight = dg.zeros(8, 4)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        net.nope  # noqa: B018


def test_deepcopy_gives_independent_parameters():
    net = Net()
    clone = copy.deepcopy(net)
    with dg.no_grad():
        clone.fc1.weight.add_(1)
    assert not np.allclose(clone.fc1.weight.detach().numpy(), net.fc1.weight.detach().numpy())
    assert isinstance(clone.fc1.weight, nn.Parameter)


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and len(seq[:2]) == 2
    ml = nn.ModuleList([nn.Linear(1, 1) for _ in range(3)])
    ml.append(nn.Linear(1, 2))
    assert len(list(ml.parameters())) == 8 and ml[-1].out_features == 2
    md = nn.ModuleDict({"a": nn.Linear(1, 1), "b": nn.ReLU()})
    assert list(md.keys()) == ["a", "b"] and "a" in md
    with pytest.raises(IndexError, match="out of range"):
        seq[5]
