"""Scenario 12: the bad-input catalogue.

Each case builds fresh objects, snapshots everything the call could touch (tensor values,
gradients and versions, module parameters and buffers, optimizer state and hyperparameters,
scheduler attributes, files and directories), makes one bad call, and asserts the error type,
words of its message (names, shapes, dtypes, what to do) and that the snapshot is unchanged.
Collectives run in this process's world of one (``distributed.init()``); the launcher cases
run ``distgrad-run --dry-run`` with invalid input."""

import copy
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import distgrad as dg
import distgrad.distributed as dist
import distgrad.nn.functional as F
from distgrad import checkpoint, nn, optim
from distgrad.autograd import Tensor
from distgrad.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    TensorDataset,
    default_collate,
)
from distgrad.distributed.fsdp import MixedPrecisionPolicy
from tests import mpijob

CASES = []


def case(area, error, *words):
    """Register ``build() -> (bad_call, watched)`` as a catalogue case."""

    def register(build):
        CASES.append((area, build.__name__, build, error, words))
        return build

    return register


# ---- snapshots -------------------------------------------------------------------------------
def snapshot(obj):
    """A comparable copy of the state of ``obj`` (recursively through lists/tuples/dicts)."""
    if isinstance(obj, Tensor):
        grad = None if obj._grad is None else snapshot(obj._grad)
        return ("tensor", obj._array.copy(), obj.requires_grad, obj._version.value, grad)
    if isinstance(obj, nn.Module):
        return ("module", obj.training, snapshot(obj.state_dict(keep_vars=True)))
    if isinstance(obj, optim.Optimizer):
        groups = [{k: v for k, v in g.items() if k != "params"} for g in obj.param_groups]
        return (
            "optimizer",
            copy.deepcopy(groups),
            [[id(p) for p in g["params"]] for g in obj.param_groups],
            snapshot({id(p): s for p, s in obj.state.items()}),
        )
    if isinstance(obj, optim.lr_scheduler.LRScheduler):
        return ("scheduler", snapshot({k: v for k, v in obj.__dict__.items() if k != "optimizer"}))
    if isinstance(obj, Path):
        if obj.is_dir():
            return ("dir", {p.name: snapshot(p) for p in sorted(obj.iterdir())})
        return ("file", obj.read_bytes()) if obj.exists() else ("absent",)
    if isinstance(obj, np.ndarray):
        return ("array", obj.copy())
    if isinstance(obj, dict):
        return ("dict", {k: snapshot(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [snapshot(v) for v in obj])
    return ("value", copy.deepcopy(obj))


def same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def trained(model=None, opt="adam"):
    """A small model one step into training (gradients and optimizer state populated)."""
    model = model or nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    optimizer = (
        optim.Adam(model.parameters(), lr=0.1)
        if opt == "adam"
        else optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    )
    x = dg.randn(5, model[0].in_features)
    model(x).pow(2).sum().backward()
    optimizer.step()
    model(x * 2).pow(2).sum().backward()  # fresh gradients for the next step
    return model, optimizer


# ---- ops ----------------------------------------------------------------------------------
@case(
    "ops",
    RuntimeError,
    "add",
    "size of tensor a (2)",
    "tensor b (4)",
    "dimension 0",
    "[2, 3]",
    "[4, 5]",
)
def add_shapes_do_not_broadcast():
    a, b = dg.randn(2, 3), dg.randn(4, 5)
    return lambda: a + b, [a, b]


@case("ops", RuntimeError, "add_", "output with shape [1, 3]", "broadcast shape [3, 3]")
def inplace_add_would_change_shape():
    a, b = dg.randn(1, 3), dg.randn(3, 3)
    return lambda: a.add_(b), [a, b]


@case("ops", RuntimeError, "matmul", "2x3 and 4x5")
def matmul_shapes():
    a, b = dg.randn(2, 3, requires_grad=True), dg.randn(4, 5)
    return lambda: a @ b, [a, b]


@case("ops", RuntimeError, "matmul", "same dtype", "float32", "float64", ".to(dtype)")
def matmul_dtypes():
    a, b = dg.randn(2, 3), dg.randn(3, 2, dtype=dg.float64)
    return lambda: a @ b, [a, b]


@case("ops", RuntimeError, "leaf Variable that requires grad", "mul_", "no_grad")
def inplace_on_leaf_requiring_grad():
    w = dg.randn(3, requires_grad=True)
    return lambda: w.mul_(2), [w]


@case("ops", IndexError, "sum", "Dimension out of range", "[-2, 1]", "got 5")
def reduction_dim_out_of_range():
    a = dg.randn(2, 3)
    return lambda: a.sum(dim=5), [a]


@case("ops", RuntimeError, "shape '[4, 4]' is invalid for input of size 6")
def reshape_wrong_numel():
    a = dg.randn(2, 3)
    return lambda: a.reshape(4, 4), [a]


@case("ops", RuntimeError, "view", "[3, 2]", ".reshape(...)")
def view_of_non_contiguous():
    a = dg.randn(2, 3)
    return lambda: a.t().view(6), [a]


@case("ops", RuntimeError, "Sizes of tensors must match", "Expected size 3 but got size 5")
def cat_mismatched():
    a, b = dg.randn(2, 3), dg.randn(2, 5)
    return lambda: dg.cat([a, b]), [a, b]


@case("ops", IndexError, "gather", "index 5", "dimension 1 with size 3")
def gather_index_out_of_bounds():
    a = dg.randn(2, 3, requires_grad=True)
    return lambda: a.gather(1, dg.tensor([[0, 5]])), [a]


@case("ops", RuntimeError, "mean()", "floating point", "int64", "x.float()")
def mean_of_integers():
    a = dg.tensor([1, 2, 3])
    return lambda: a.mean(), [a]


@case(
    "ops",
    RuntimeError,
    "grad can be implicitly created only for scalar outputs",
    "[3]",
    "gradient=",
)
def backward_non_scalar():
    w = dg.randn(3, requires_grad=True)
    y = w * 2
    return lambda: y.backward(), [w]


@case("ops", RuntimeError, "Mismatch in shape", "[5]", "[3]")
def backward_gradient_wrong_shape():
    w = dg.randn(3, requires_grad=True)
    y = w * 2
    return lambda: y.backward(dg.randn(5)), [w]


@case("ops", RuntimeError, "backward through the graph a second time", "retain_graph=True")
def backward_twice():
    w = dg.randn(3, requires_grad=True)
    y = (w * w).sum()
    y.backward()
    return lambda: y.backward(), [w]  # the first gradients must stay as they were


@case("ops", RuntimeError, "modified by an inplace operation", "ExpBackward", "version 1")
def saved_tensor_modified_in_place():
    w = dg.randn(3, requires_grad=True)
    e = w.exp()
    loss = e.sum()
    with dg.no_grad():
        e.add_(1)
    return lambda: loss.backward(), [w]


@case("ops", IndexError, "cross_entropy", "target 5", "3 classes", "[0, 2]")
def cross_entropy_target_out_of_range():
    logits = dg.randn(4, 3, requires_grad=True)
    return lambda: F.cross_entropy(logits, dg.tensor([0, 1, 5, 2])), [logits]


@case("ops", RuntimeError, "conv2d", "expected input[1, 2, 8, 8] to have 3 channels")
def conv_wrong_channels():
    conv = nn.Conv2d(3, 4, 3)
    x = dg.randn(1, 2, 8, 8)
    return lambda: conv(x), [conv, x]


# ---- modules --------------------------------------------------------------------------------
@case("modules", RuntimeError, "Linear", "in_features=4", "[3, 5]")
def linear_wrong_input():
    layer = nn.Linear(4, 2)
    return lambda: layer(dg.randn(3, 5)), [layer]


@case("modules", ValueError, "BatchNorm1d", "expected 4 channels", "[8, 5]")
def batchnorm_wrong_channels():  # running statistics must not move
    bn = nn.BatchNorm1d(4)
    return lambda: bn(dg.randn(8, 5)), [bn]


@case("modules", IndexError, "embedding", "index 7", "5 rows")
def embedding_index_out_of_range():
    emb = nn.Embedding(5, 2)
    return lambda: emb(dg.tensor([1, 7])), [emb]


@case("modules", RuntimeError, "Missing key(s)", '"2.bias"')
def load_state_dict_missing_key():
    model, _ = trained()
    sd = {k: v.detach().clone() + 1 for k, v in model.state_dict().items() if k != "2.bias"}
    return lambda: model.load_state_dict(sd), [model]


@case("modules", RuntimeError, "size mismatch for 0.weight", "[5, 3]", "[4, 3]")
def load_state_dict_wrong_shape():
    model, _ = trained()
    sd = {k: v.detach().clone() + 1 for k, v in model.state_dict().items()}
    sd["0.weight"] = dg.randn(5, 3)
    return lambda: model.load_state_dict(sd), [model]


@case("modules", RuntimeError, "Unexpected key(s)", '"extra"')
def load_state_dict_unexpected_key():
    model, _ = trained()
    sd = {k: v.detach().clone() + 1 for k, v in model.state_dict().items()}
    sd["extra"] = dg.randn(1)
    return lambda: model.load_state_dict(sd), [model]


@case("modules", TypeError, "cannot assign 'Tensor' as parameter 'weight'", "nn.Parameter")
def assign_plain_tensor_to_parameter():
    layer = nn.Linear(2, 2)
    return lambda: setattr(layer, "weight", dg.randn(2, 2)), [layer]


@case("modules", KeyError, "parameter name", '"."', "a.b")
def register_parameter_bad_name():
    layer = nn.Linear(2, 2)
    return lambda: layer.register_parameter("a.b", nn.Parameter(dg.randn(2))), [layer]


@case("modules", ValueError, "Conv2d", "kernel_size", "must be positive", "(0, 0)")
def conv_zero_kernel():
    return lambda: nn.Conv2d(3, 4, kernel_size=0), []


@case("modules", RuntimeError, "assigned grad has data of a different size", "[4]", "[2, 3]")
def assign_wrong_shaped_grad():
    layer = nn.Linear(3, 2)
    layer(dg.randn(1, 3)).sum().backward()
    return lambda: setattr(layer.weight, "grad", dg.randn(4)), [layer.weight]


@case("modules", RuntimeError, "non-finite", "error_if_nonfinite=False")
def clip_grad_norm_of_infinite_gradients():
    layer = nn.Linear(2, 2)
    layer.weight.grad = dg.tensor(np.full((2, 2), np.inf, np.float32))
    layer.bias.grad = dg.ones(2)
    return (
        lambda: nn.utils.clip_grad_norm_(layer.parameters(), 1.0, error_if_nonfinite=True),
        [layer.weight, layer.bias],
    )


# ---- optimizers and schedulers --------------------------------------------------------------
@case("optimizers", ValueError, "Invalid learning rate: -1")
def sgd_negative_lr():
    w = dg.randn(2, requires_grad=True)
    return lambda: optim.SGD([w], lr=-1), [w]


@case("optimizers", TypeError, "lr must be a number", "'0.1'", "str")
def lr_given_as_string():
    w = dg.randn(2, requires_grad=True)
    return lambda: optim.Adam([w], lr="0.1"), [w]


@case("optimizers", ValueError, "Invalid beta parameter at index 0: 1.5")
def adam_bad_betas():
    w = dg.randn(2, requires_grad=True)
    return lambda: optim.Adam([w], betas=(1.5, 0.9)), [w]


@case("optimizers", TypeError, "ordered collections", "Please use a list instead")
def params_given_as_set():
    w = dg.randn(2, requires_grad=True)
    return lambda: optim.SGD({w}, lr=0.1), [w]


@case(
    "optimizers",
    RuntimeError,
    "Adam.step",
    "gradient of parameter 0",
    "[5]",
    "[4, 3]",
    "nothing was updated",
)
def step_with_wrong_shaped_grad():
    model, opt = trained()
    model[0].weight._grad = dg.randn(5)
    return lambda: opt.step(), [model, opt]


@case(
    "optimizers",
    RuntimeError,
    "SGD.step",
    "parameter 3",
    "dtype distgrad.float64",
    "dtype distgrad.float32",
)
def step_with_wrong_dtype_grad():
    model, opt = trained(opt="sgd")
    model[2].bias._grad = dg.randn(2, dtype=dg.float64)
    return lambda: opt.step(), [model, opt]


@case(
    "optimizers",
    ValueError,
    "different number of parameter groups",
    "0 in the state dict",
    "1 in the optimizer",
)
def load_state_dict_wrong_groups():
    model, opt = trained()
    return lambda: opt.load_state_dict({"state": {}, "param_groups": []}), [model, opt]


@case("optimizers", ValueError, "state['exp_avg']", "[7]", "parameter 0", "[4, 3]")
def load_state_dict_wrong_shaped_state():
    model, opt = trained()
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["exp_avg"] = dg.randn(7)
    return lambda: opt.load_state_dict(sd), [model, opt]


@case("optimizers", ValueError, "more than one parameter group")
def param_in_two_groups():
    model, opt = trained()
    return lambda: opt.add_param_group({"params": [model[0].weight]}), [model, opt]


@case("optimizers", KeyError, "initial_lr", "param_groups[0]", "load the optimizer's state")
def scheduler_resume_without_initial_lr():
    model, opt = trained()
    return lambda: optim.lr_scheduler.StepLR(opt, 2, last_epoch=3), [model, opt]


@case("optimizers", ValueError, "Expected 1 lr_lambdas, but got 2")
def lambda_lr_wrong_count():
    model, opt = trained()
    return (lambda: optim.lr_scheduler.LambdaLR(opt, [lambda e: 1.0, lambda e: 0.5]), [model, opt])


# ---- data -----------------------------------------------------------------------------------
@case("data", ValueError, "num_workers", "non-negative", "num_workers=0")
def dataloader_negative_workers():
    ds = TensorDataset(dg.randn(4, 2))
    return lambda: DataLoader(ds, num_workers=-1), [ds.tensors]


@case("data", ValueError, "batch_size should be a positive integer", "batch_size=0")
def dataloader_zero_batch():
    ds = TensorDataset(dg.randn(4, 2))
    return lambda: DataLoader(ds, batch_size=0), [ds.tensors]


@case("data", ValueError, "sampler option is mutually exclusive with shuffle")
def dataloader_sampler_and_shuffle():
    ds = TensorDataset(dg.randn(4, 2))
    return lambda: DataLoader(ds, shuffle=True, sampler=[0, 1]), [ds.tensors]


@case("data", RuntimeError, "default_collate", "equal size", "[2] at entry 0", "[3] at entry 1")
def collate_ragged_samples():
    samples = [np.zeros(2), np.zeros(3)]
    return lambda: default_collate(samples), [samples]


@case("data", ValueError, "Size mismatch between tensors", "(4, 2)", "(3,)")
def tensor_dataset_mismatch():
    a, b = dg.randn(4, 2), dg.randn(3)
    return lambda: TensorDataset(a, b), [a, b]


@case("data", ValueError, "Invalid rank 2", "[0, 1]")
def distributed_sampler_bad_rank():
    return lambda: DistributedSampler(TensorDataset(dg.randn(4)), num_replicas=2, rank=2), []


@case("data", TypeError, "ResumableLoader", "IterableDataset", "epoch boundaries")
def resumable_loader_over_iterable():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(3))

    loader = DataLoader(Stream(), batch_size=2)
    return lambda: checkpoint.ResumableLoader(loader), [loader.batch_sampler is None]


@case("data", ValueError, "ResumableLoader.load_state_dict", "'order'", "'global_index'")
def resumable_loader_state_without_position():
    loader = checkpoint.ResumableLoader(DataLoader(TensorDataset(dg.arange(6.0)), batch_size=2))
    state = {"active": True, "batches_done": 1, "sampler_epoch": None}  # an epoch in progress
    return lambda: loader.load_state_dict(state), [state, loader.batches_done]


# ---- collectives (this process's world of one) ----------------------------------------------
@pytest.fixture(scope="module")
def world():
    started = not dist.is_initialized()
    dist.init()
    yield
    if started:
        dist.finalize()


@case("collectives", TypeError, "all_reduce", "tensor must be a Tensor", "ndarray")
def all_reduce_non_tensor():
    a = np.ones(3)
    return lambda: dist.all_reduce(a), [a]


@case("collectives", TypeError, "ReduceOp.AVG", "int64", "SUM and divide")
def all_reduce_avg_of_integers():
    t = dg.tensor([1, 2, 3])
    return lambda: dist.all_reduce(t, dist.ReduceOp.AVG), [t]


@case("collectives", TypeError, "op must be a distgrad.distributed.ReduceOp", "'sum'")
def all_reduce_op_as_string():
    t = dg.randn(3)
    return lambda: dist.all_reduce(t, "sum"), [t]


@case("collectives", ValueError, "broadcast", "rank 1 is not in the world", "size 1")
def broadcast_from_missing_rank():
    t = dg.randn(3)
    return lambda: dist.broadcast(t, src=1), [t]


@case("collectives", ValueError, "all_gather", "group size (1)", "got 2")
def all_gather_wrong_list_length():
    out, t = [dg.randn(2), dg.randn(2)], dg.randn(2)
    return lambda: dist.all_gather(out, t), [out, t]


@case("collectives", ValueError, "all_gather", "tensor_list[0]", "shape [3]", "expected [2]")
def all_gather_wrong_shape():
    out, t = [dg.randn(3)], dg.randn(2)
    return lambda: dist.all_gather(out, t), [out, t]


@case("collectives", ValueError, "reduce_scatter", "world_size (1) x 3", "got 2")
def reduce_scatter_tensor_wrong_size():
    out, inp = dg.randn(3), dg.randn(2)
    return lambda: dist.reduce_scatter_tensor(out, inp), [out, inp]


@case("collectives", ValueError, "scatter", "rank 0 (src) must pass scatter_list")
def scatter_without_list():
    t = dg.randn(2)
    return lambda: dist.scatter(t, None, src=0), [t]


@case("collectives", ValueError, "all_gather_object", "group size (1) entries", "got 2")
def all_gather_object_wrong_length():
    out = ["keep", "me"]
    return lambda: dist.all_gather_object(out, 1), [out]


@case("collectives", ValueError, "collective timeout must be a positive number", "0.0")
def zero_timeout():
    return lambda: dist.set_timeout(0), [dist.get_timeout()]


@case("collectives", TypeError, "MixedPrecisionPolicy: param_dtype", "distgrad dtype", "float16")
def mixed_precision_policy_numpy_dtype():  # was silently ignored (the unit kept float32)
    return lambda: MixedPrecisionPolicy(param_dtype=np.float16), []


@case("collectives", TypeError, "MixedPrecisionPolicy: output_dtype", "'bfloat16' (str)")
def mixed_precision_policy_dtype_name():
    return lambda: MixedPrecisionPolicy(output_dtype="bfloat16"), []


@case("collectives", TypeError, "DataParallel wraps an nn.Module", "str")
def data_parallel_of_non_module():
    return lambda: dist.DataParallel("model"), []


# ---- serialization and checkpoints --------------------------------------------------------
@case("serialization", TypeError, "distgrad.save", "cannot save a whole Linear", "state_dict()")
def save_a_module(tmp):
    path = tmp / "model.safetensors"
    dg.save({"w": dg.ones(2)}, path)  # an earlier good file must survive the failed save
    return lambda: dg.save(nn.Linear(2, 2), path), [tmp]


@case("serialization", TypeError, "cannot save 'state.ids'", "uint32", ".astype()")
def save_unsupported_dtype(tmp):
    return lambda: dg.save({"state": {"ids": np.zeros(3, np.uint32)}}, tmp / "x"), [tmp]


@case("serialization", ValueError, "contains itself", "reference cycles")
def save_a_cycle(tmp):
    cyclic = {"a": dg.ones(1)}
    cyclic["self"] = cyclic
    return lambda: dg.save(cyclic, tmp / "x"), [tmp]


@case("serialization", ValueError, "keep must be an int >= 1", "got 0")
def checkpoint_keep_zero(tmp):
    model, opt = trained()
    checkpoint.save(tmp / "ckpt", model=model, optimizer=opt, step=1)
    return (lambda: checkpoint.save(tmp / "ckpt", model=model, step=2, keep=0), [tmp, model, opt])


@case(
    "serialization",
    TypeError,
    "distgrad.save",
    "cannot save builtin_function_or_method",
    "['extra']['fn']",
)
def checkpoint_extra_unsupported(tmp):
    model, opt = trained()
    checkpoint.save(tmp / "ckpt", model=model, optimizer=opt, step=1)
    return (
        lambda: checkpoint.save(
            tmp / "ckpt", model=model, optimizer=opt, step=2, extra={"fn": print}
        ),
        [tmp, model, opt],
    )


@case("serialization", checkpoint.CheckpointError, "holds no optimizer state", "optimizer=None")
def checkpoint_missing_optimizer_state(tmp):
    model, opt = trained()
    checkpoint.save(tmp / "ckpt", model=model, step=1)
    return lambda: checkpoint.load(tmp / "ckpt", model=model, optimizer=opt), [tmp, model, opt]


@case("serialization", ValueError, "state['exp_avg'] of shape [4, 3]", "[4, 5]", "another model")
def checkpoint_for_another_model(tmp):
    model, opt = trained()
    checkpoint.save(tmp / "ckpt", model=model, optimizer=opt, step=1)
    other, other_opt = trained(nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)))
    return (
        lambda: checkpoint.load(tmp / "ckpt", model=other, optimizer=other_opt),
        [tmp, other, other_opt],
    )


@case("serialization", RuntimeError, "Missing key(s)", '"1.weight"', "Unexpected key(s)")
def checkpoint_with_other_names(tmp):
    model, opt = trained()
    checkpoint.save(tmp / "ckpt", model=model, optimizer=opt, step=1)
    other, other_opt = trained(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))
    return (
        lambda: checkpoint.load(tmp / "ckpt", model=other, optimizer=other_opt),
        [tmp, other, other_opt],
    )  # the optimizer state loaded first is rolled back


@case("serialization", FileNotFoundError, "no checkpoint directory", "nowhere")
def checkpoint_load_missing_directory(tmp):
    model, opt = trained()
    return lambda: checkpoint.load(tmp / "nowhere", model=model), [tmp, model]


# ---- the launcher -------------------------------------------------------------------------
class LaunchFailed(Exception):
    """distgrad-run exited with a non-zero status (its stderr is the message)."""


def launch(tmp, *args):
    job = mpijob.run_command(
        [sys.executable, "-m", "distgrad.launcher", "--dry-run", *args], timeout=60
    )
    launch.orphans += job.orphans
    if job.returncode != 0:
        raise LaunchFailed(f"exit {job.returncode}: {job.stderr}")
    return job


launch.orphans = 0


def launcher_case(*words):
    return case("launcher", LaunchFailed, "exit 2", *words)


@launcher_case("-np", "must be at least 1", "got 0")
def launch_zero_ranks(tmp):
    return lambda: launch(tmp, "-np", "0", "python", "train.py"), [tmp]


@launcher_case("-np 4 is more than the 2 slots", "--oversubscribe")
def launch_more_ranks_than_slots(tmp):
    return lambda: launch(tmp, "-np", "4", "-H", "localhost:2", "python", "train.py"), [tmp]


@launcher_case("cannot read hostfile", "missing-hostfile", "No such file")
def launch_missing_hostfile(tmp):
    return (
        lambda: launch(tmp, "--hostfile", str(tmp / "missing-hostfile"), "python", "train.py"),
        [tmp],
    )


@launcher_case("line 2", "slots must be a whole number", "'two'")
def launch_bad_hostfile_line(tmp):
    (tmp / "hostfile").write_text("localhost:1\nnode2 slots=two\n")
    return lambda: launch(tmp, "--hostfile", str(tmp / "hostfile"), "python", "x.py"), [tmp]


@launcher_case("no COMMAND given", "distgrad-run -np 2 python train.py")
def launch_without_command(tmp):
    return lambda: launch(tmp, "-np", "2"), [tmp]


@launcher_case("--timeout", "must be more than 0 seconds", "-5")
def launch_negative_timeout(tmp):
    return lambda: launch(tmp, "--timeout", "-5", "python", "train.py"), [tmp]


# ---- the test -------------------------------------------------------------------------------
AREAS = {}
for _area, _name, *_ in CASES:
    AREAS.setdefault(_area, []).append(_name)


def test_catalogue_is_large_and_broad():
    assert len(CASES) >= 40, len(CASES)
    assert set(AREAS) >= {"ops", "modules", "optimizers", "collectives", "launcher"}


@pytest.mark.parametrize(
    "area,name,build,error,words",
    [pytest.param(*c, marks=[pytest.mark.multiprocess] * (c[0] == "launcher")) for c in CASES],
    ids=[c[1] for c in CASES],
)
def test_bad_input(area, name, build, error, words, fault_record, tmp_path, request):
    if area == "collectives":
        request.getfixturevalue("world")
    dg.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call, watched = build(tmp_path) if build.__code__.co_argcount else build()
    before = snapshot(watched)
    orphans_before = launch.orphans
    start = time.perf_counter()
    with pytest.raises(error) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    took = time.perf_counter() - start
    unchanged = same(snapshot(watched), before)
    message = str(info.value)
    fault_record(
        f"12 bad-input catalogue ({area})",
        AREAS[area].index(name),
        detection_s=took,
        guard="exit status 2" if area == "launcher" else type(info.value).__name__,
        orphans=launch.orphans - orphans_before,
    )
    missing = [w for w in words if w not in message]
    assert not missing, f"{missing} not in the message: {message}"
    assert unchanged, f"{name}: the failed call changed state"
    assert launch.orphans == orphans_before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], os.listdir(tmp_path)
