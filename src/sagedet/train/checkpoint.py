"""Training checkpoints in /opt/ml/checkpoints, which SageMaker syncs to S3 and restores on resume.

A checkpoint is one ``torch.save`` file holding a dict of state dicts (model, optimizer, scheduler)
and plain values (ints, floats, strings, lists, dicts). It is written to a temporary file in the
same folder and renamed over the old one, so it is never seen half-written; it is read with
``weights_only=True``, so loading one never runs pickled code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sagedet.artifacts import atomic_write
from sagedet.errors import ModelError


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict | None:
    """The saved state on the CPU, or None when there is no checkpoint at ``path``."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # on bad bytes torch.load raises RuntimeError, EOFError, KeyError, ...
        raise ModelError(
            f"checkpoint {path} is corrupt or not a sagedet checkpoint ({e}); "
            "delete it to start training afresh"
        ) from e
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of state")
    return state
