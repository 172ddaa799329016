"""The optimizer and learning-rate schedule the hyperparameters name.

As in the built-in: ``momentum`` applies to sgd only; ``weight_decay`` to sgd and rmsprop (adam and
adadelta take none); ``lr_scheduler_step`` lists the epochs at which the learning rate is
multiplied by ``lr_scheduler_factor``. On CUDA the fused or foreach implementations are used.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..sagemaker.hyperparameters import TrainingConfig


def build_optimizer(config: TrainingConfig, parameters: Iterable[torch.nn.Parameter], cuda: bool) -> torch.optim.Optimizer:
    params = [p for p in parameters if p.requires_grad]
    lr = config.learning_rate
    fast = {"fused": True} if cuda else {}
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, **fast)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, **fast)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=config.weight_decay, foreach=cuda or None)
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, foreach=cuda or None)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")  # the config admits only the four above


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping this process's implementation: a checkpoint keeps
    its writer's ``fused`` and ``foreach`` in each parameter group, so a job written on the CPU and
    resumed on a GPU would otherwise step without its fused kernels."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for key in ("fused", "foreach"):
            if key in optimizer.defaults:
                group[key] = optimizer.defaults[key]


def implementation(optimizer: torch.optim.Optimizer) -> str:
    """How ``optimizer`` steps: "fused" (one kernel for all parameters), "foreach" (batched per-tensor
    kernels) or "for-loop" (one parameter at a time), for the log."""
    defaults = optimizer.defaults
    return "fused" if defaults.get("fused") else "foreach" if defaults.get("foreach") else "for-loop"


# A key only that optimizer's parameter groups hold (torch has had each since the optimizer's first release).
_GROUP_MARKS = {"sgd": "nesterov", "adam": "amsgrad", "rmsprop": "centered", "adadelta": "rho"}


def saved_optimizer_name(state: dict) -> str | None:
    """Which of the four optimizers wrote ``state`` (an ``Optimizer.state_dict()``), None if none of them."""
    groups = state.get("param_groups") or [{}]
    names = [name for name, mark in _GROUP_MARKS.items() if all(mark in group for group in groups)]
    return names[0] if len(names) == 1 else None


def build_scheduler(config: TrainingConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.lr_scheduler_step),
                                                gamma=config.lr_scheduler_factor)
