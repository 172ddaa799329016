"""Early stopping on validation:mAP, as the built-in's early_stopping hyperparameters define it.

An epoch *improves* when its mAP exceeds the best so far by more than ``tolerance`` relative to
the best: ``(map - best) / best > tolerance`` (any mAP above 0 improves on a best of 0). Training
stops once ``patience`` epochs in a row have not improved, but never before ``min_epochs`` epochs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    enabled: bool
    min_epochs: int
    patience: int
    tolerance: float
    best_map: float = -1.0
    best_epoch: int = -1
    epochs_without_improvement: int = 0

    def update(self, epoch: int, validation_map: float) -> bool:
        """Record an epoch's mAP (epoch is 0-based); return True if it is the best so far."""
        if self.best_map < 0:
            improved = True
        elif self.best_map == 0:
            improved = validation_map > 0
        else:
            improved = (validation_map - self.best_map) / self.best_map > self.tolerance
        if improved:
            self.best_map, self.best_epoch = validation_map, epoch
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    def should_stop(self, epochs_completed: int) -> bool:
        return (self.enabled and epochs_completed >= self.min_epochs
                and self.epochs_without_improvement >= self.patience)

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ("best_map", "best_epoch", "epochs_without_improvement")}

    def load_state_dict(self, state: dict) -> None:
        self.best_map = float(state["best_map"])
        self.best_epoch = int(state["best_epoch"])
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
