"""Early stopping on validation:mAP, as the built-in's early_stopping hyperparameters define it, and the
best epoch, whose weights the job saves.

The best epoch is the one with the highest mAP, whatever the early-stopping settings (they apply only
with ``early_stopping`` true, as in the built-in).

For early stopping, an epoch *improves* when its mAP exceeds the reference by more than ``tolerance``
relative to it: ``(map - reference) / reference > tolerance`` (any mAP above 0 improves on a reference of
0). The reference is the mAP of the last epoch that improved (the first epoch's at the start), as with
Keras's ``min_delta``: several small gains in a row do not reset the patience. Training stops once
``patience`` epochs in a row have not improved, but never before ``min_epochs`` epochs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStopping:
    enabled: bool
    min_epochs: int
    patience: int
    tolerance: float
    best_map: float = -1.0
    best_epoch: int = -1
    reference_map: float = -1.0
    epochs_without_improvement: int = 0

    def update(self, epoch: int, validation_map: float) -> bool:
        """Record an epoch's mAP (epoch is 0-based); return True if it is the best so far (the highest)."""
        if self.reference_map < 0:
            improved = True
        elif self.reference_map == 0:
            improved = validation_map > 0
        else:
            improved = (validation_map - self.reference_map) / self.reference_map > self.tolerance
        if improved:
            self.reference_map = validation_map
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        best = validation_map > self.best_map
        if best:
            self.best_map, self.best_epoch = validation_map, epoch
        return best

    def should_stop(self, epochs_completed: int) -> bool:
        return (self.enabled and epochs_completed >= self.min_epochs
                and self.epochs_without_improvement >= self.patience)

    def state_dict(self) -> dict:
        return {"best_map": self.best_map, "best_epoch": self.best_epoch, "reference_map": self.reference_map,
                "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict) -> None:
        self.best_map = float(state["best_map"])
        self.best_epoch = int(state["best_epoch"])
        # checkpoints before the best epoch and the reference were told apart held only the reference
        self.reference_map = float(state.get("reference_map", state["best_map"]))
        self.epochs_without_improvement = int(state["epochs_without_improvement"])
