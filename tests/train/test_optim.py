"""Optimizers, the learning-rate schedule and early stopping as the built-in's hyperparameters define them."""

import pytest
import torch

from sagedet.sagemaker.hyperparameters import parse_hyperparameters
from sagedet.train.early_stopping import EarlyStopping
from sagedet.train.optim import build_optimizer, build_scheduler


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
    # +20 %, +3 %, +8 % (patience spent, but only 4 of min_epochs 5 done), +16 %, +1.4 % over the best
    maps = [0.5, 0.6, 0.62, 0.65, 0.70, 0.71]
    decisions = []
    for epoch, value in enumerate(maps):
        improved = stopper.update(epoch, value)
        decisions.append((improved, stopper.should_stop(epoch + 1)))
    assert decisions == [(True, False), (True, False), (False, False), (False, False), (True, False), (False, False)]
    assert stopper.best_epoch == 4 and stopper.best_map == 0.70
    stopper.update(6, 0.705)
    assert stopper.should_stop(7)


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
