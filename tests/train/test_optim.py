"""Optimizers, the learning-rate schedule and early stopping as the built-in's hyperparameters define them."""

import pytest
import torch

from sagedet.sagemaker.hyperparameters import parse_hyperparameters
from sagedet.train.early_stopping import EarlyStopping
from sagedet.train.loop import gpu_training_line
from sagedet.train.optim import build_optimizer, build_scheduler, implementation, load_optimizer_state


def _config(**values):
    return parse_hyperparameters({"num_classes": "2", "num_training_samples": "10", **values})


@pytest.mark.parametrize("name, cls, expected", [
    ("sgd", torch.optim.SGD, {"momentum": 0.8, "weight_decay": 0.01}),
    ("adam", torch.optim.Adam, {"weight_decay": 0}),
    ("rmsprop", torch.optim.RMSprop, {"weight_decay": 0.01, "momentum": 0}),
    ("adadelta", torch.optim.Adadelta, {"weight_decay": 0}),
])
def test_each_optimizer_gets_the_hyperparameters_that_apply_to_it(name, cls, expected):
    config = _config(optimizer=name, learning_rate="0.02", momentum="0.8", weight_decay="0.01")
    parameter = torch.nn.Parameter(torch.ones(3))
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    optimizer = build_optimizer(config, [parameter, frozen], cuda=False)
    assert isinstance(optimizer, cls)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.02 and len(group["params"]) == 1  # frozen parameters are left out
    for key, value in expected.items():
        assert group[key] == value
    parameter.grad = torch.ones(3)
    optimizer.step()
    assert not torch.equal(parameter.detach(), torch.ones(3))


@pytest.mark.parametrize("name, on_cuda", [("sgd", "fused"), ("adam", "fused"), ("rmsprop", "foreach"),
                                           ("adadelta", "foreach")])
def test_on_cuda_each_optimizer_steps_all_parameters_at_once(name, on_cuda):
    """Built for CUDA, on CPU parameters (torch has fused SGD and Adam on the CPU too): the implementation
    asked for, and the one the log names."""
    config = _config(optimizer=name)
    assert implementation(build_optimizer(config, [torch.nn.Parameter(torch.ones(3))], cuda=True)) == on_cuda
    assert implementation(build_optimizer(config, [torch.nn.Parameter(torch.ones(3))], cuda=False)) == "for-loop"


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adadelta"])
def test_a_checkpoint_from_the_cpu_resumes_with_the_gpus_implementation(name):
    """A checkpoint keeps its writer's fused/foreach per parameter group; resumed where cuda=True (fused
    SGD and Adam exist on the CPU too), the optimizer keeps stepping as this process built it."""
    parameter = torch.nn.Parameter(torch.ones(3))
    written = build_optimizer(_config(optimizer=name), [parameter], cuda=False)
    parameter.grad = torch.ones(3)
    written.step()
    resumed = build_optimizer(_config(optimizer=name), [parameter], cuda=True)
    load_optimizer_state(resumed, written.state_dict())
    key = "fused" if implementation(resumed) == "fused" else "foreach"
    assert all(group[key] is True for group in resumed.param_groups)
    assert resumed.state[parameter] and len(resumed.state[parameter]) == len(written.state[parameter])
    resumed.step()


def test_the_gpu_training_line_says_how_the_gpu_trains():
    optimizer = build_optimizer(_config(optimizer="sgd"), [torch.nn.Parameter(torch.ones(3))], cuda=True)
    line = gpu_training_line("NVIDIA H100 80GB HBM3", torch.device("cuda", 0), torch.bfloat16, False, optimizer, 15)
    assert line == ("GPU training on cuda:0 (NVIDIA H100 80GB HBM3): bf16 autocast, channels-last, SGD (fused), "
                    "15 DataLoader worker(s) filling pinned memory")
    line = gpu_training_line("Tesla T4", torch.device("cuda", 1), torch.float16, True, optimizer, 3)
    assert "fp16 autocast with a gradient scaler" in line


def test_learning_rate_steps_down_at_the_listed_epochs():
    config = _config(learning_rate="0.1", lr_scheduler_step="2, 4", lr_scheduler_factor="0.5")
    optimizer = build_optimizer(config, [torch.nn.Parameter(torch.ones(1))], cuda=False)
    scheduler = build_scheduler(config, optimizer)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_early_stopping_waits_for_min_epochs_and_patience():
    stopper = EarlyStopping(enabled=True, min_epochs=5, patience=2, tolerance=0.1)
    # over the last improving epoch's mAP: +20 %, +3 %, +8 % (patience spent, but only 4 of min_epochs 5
    # done), +16 %, +1.4 %
    maps = [0.5, 0.6, 0.62, 0.65, 0.70, 0.71]
    decisions = []
    for epoch, value in enumerate(maps):
        stopper.update(epoch, value)
        decisions.append((stopper.epochs_without_improvement, stopper.should_stop(epoch + 1)))
    assert decisions == [(0, False), (0, False), (1, False), (2, False), (0, False), (1, False)]
    stopper.update(6, 0.705)
    assert stopper.should_stop(7)


def test_the_best_epoch_is_the_highest_map_whatever_the_tolerance():
    """The saved model is the highest-scoring epoch's: a gain below the tolerance still counts there."""
    for enabled in (True, False):
        stopper = EarlyStopping(enabled=enabled, min_epochs=10, patience=5, tolerance=0.1)
        best = [stopper.update(epoch, value) for epoch, value in enumerate([0.50, 0.54, 0.53, 0.52, 0.545])]
        assert best == [True, True, False, False, True]
        assert (stopper.best_epoch, stopper.best_map) == (4, 0.545)
        assert stopper.epochs_without_improvement == 4  # every gain was below 10 % of 0.50


def test_early_stopping_disabled_never_stops_but_still_tracks_the_best():
    stopper = EarlyStopping(enabled=False, min_epochs=1, patience=1, tolerance=0.0)
    for epoch, value in enumerate([0.3, 0.2, 0.1]):
        stopper.update(epoch, value)
    assert not stopper.should_stop(3) and stopper.best_epoch == 0


def test_early_stopping_state_round_trips():
    stopper = EarlyStopping(enabled=True, min_epochs=1, patience=3, tolerance=0.0)
    stopper.update(0, 0.4)
    stopper.update(1, 0.3)
    restored = EarlyStopping(enabled=True, min_epochs=1, patience=3, tolerance=0.0)
    restored.load_state_dict(stopper.state_dict())
    assert (restored.best_map, restored.best_epoch, restored.epochs_without_improvement) == (0.4, 0, 1)
    assert restored.reference_map == 0.4


def test_a_checkpoint_from_before_the_reference_resumes():
    restored = EarlyStopping(enabled=True, min_epochs=1, patience=3, tolerance=0.0)
    restored.load_state_dict({"best_map": 0.5, "best_epoch": 2, "epochs_without_improvement": 1})
    assert (restored.reference_map, restored.best_map, restored.best_epoch) == (0.5, 0.5, 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adadelta"])
def test_a_saved_optimizer_state_tells_which_optimizer_wrote_it(optimizer):
    from sagedet.sagemaker.hyperparameters import parse_hyperparameters
    from sagedet.train.optim import build_optimizer, saved_optimizer_name

    config = parse_hyperparameters({"num_classes": "3", "num_training_samples": "8", "optimizer": optimizer})
    built = build_optimizer(config, torch.nn.Linear(2, 2).parameters(), cuda=False)
    assert saved_optimizer_name(built.state_dict()) == optimizer
    assert saved_optimizer_name({"param_groups": [{"lr": 0.1}]}) is None
