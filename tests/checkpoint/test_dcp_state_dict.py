"""DCP in one process: get_state_dict/set_state_dict round trips (a fresh optimizer gets its
state first), resume equals an uninterrupted run bit for bit, bad input refused unchanged."""

import numpy as np
import pytest

import distgrad
import distgrad.distributed.checkpoint as dcp
import distgrad.nn as nn
from distgrad.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(distgrad.tensor(1.5))  # 0-d

    def forward(self, x):
        return self.fc(x) * self.scale


def _run(model, opt, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = distgrad.tensor(rng.standard_normal((5, 3)))
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: distgrad.optim.Adam(p, lr=0.1),
        lambda p: distgrad.optim.SGD(p, lr=0.1, momentum=0.9),
    ],
)
def test_resume_equals_uninterrupted(tmp_path, make):
    distgrad.set_default_dtype(distgrad.float64)
    try:
        distgrad.manual_seed(0)
        model, straight = Net(), Net()
        straight.load_state_dict(model.state_dict())
        opt, opt_straight = make(model.parameters()), make(straight.parameters())
        _run(model, opt, 3, 1)
        _run(straight, opt_straight, 3, 1)
        msd, osd = get_state_dict(model, opt)
        assert sorted(osd["state"]) == ["fc.bias", "fc.weight", "scale"]
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp_path))
        _run(straight, opt_straight, 2, 2)
        distgrad.manual_seed(9)
        fresh = Net()
        fresh_opt = make(fresh.parameters())
        assert not fresh_opt.state
        msd, osd = get_state_dict(fresh, fresh_opt)  # state made for the load to fill
        assert fresh_opt.state
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=str(tmp_path))
        set_state_dict(
            fresh, fresh_opt, model_state_dict=state["model"], optim_state_dict=state["optim"]
        )
        _run(fresh, fresh_opt, 2, 2)
        for (n, a), (_, b) in zip(fresh.named_parameters(), straight.named_parameters()):
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy(), err_msg=n)
    finally:
        distgrad.set_default_dtype(distgrad.float32)


def test_full_state_dict_and_offload_are_whole_tensors():
    model = Net()
    opt = distgrad.optim.Adam(model.parameters())
    osd = get_optimizer_state_dict(
        model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    assert osd["param_groups"][0]["params"] == [n for n, _ in model.named_parameters()]
    assert tuple(osd["state"]["fc.weight"]["exp_avg"].shape) == (4, 3)


def test_bad_model_state_is_refused_unchanged():
    model = Net()
    before = model.fc.weight.detach().numpy().copy()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd["fc.weight"] = distgrad.zeros(4, 3)
    sd["fc.bias"] = distgrad.zeros(5)
    with pytest.raises(ValueError, match=r"fc.bias.*\(4,\)"):
        set_model_state_dict(model, sd)
    np.testing.assert_array_equal(model.fc.weight.detach().numpy(), before)
    with pytest.raises(RuntimeError, match="missing keys"):
        set_model_state_dict(model, {"fc.weight": sd["fc.weight"]})


def test_load_missing_key_names_it(tmp_path):
    dcp.save({"a": distgrad.ones(2)}, checkpoint_id=str(tmp_path))
    target = {"a": distgrad.zeros(2), "b": distgrad.zeros(3)}
    with pytest.raises(dcp.CheckpointError, match="no tensor 'b'"):
        dcp.load(target, checkpoint_id=str(tmp_path))
    assert target["a"].numpy().tolist() == [0.0, 0.0]
