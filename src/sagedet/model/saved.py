"""A trained detector back from its model folder (``model.safetensors`` + ``model.json``) or archive."""

from __future__ import annotations

from pathlib import Path

from sagedet.artifacts import (
    ARCHIVE_SUFFIXES,
    find_model_dir,
    load_model,
    safe_extract_tar,
)
from sagedet.errors import ConfigError, ModelError, SagedetError
from sagedet.model.ssd import SSDDetector, build_ssd
from sagedet.sagemaker.hyperparameters import BASE_NETWORKS


def load_detector(model_dir: Path) -> tuple[SSDDetector, dict]:
    """The detector described by ``model_dir/model.json`` with its weights, in eval mode on the CPU."""
    state, metadata = load_model(Path(model_dir))
    try:
        network, num_classes, side = (str(metadata["base_network"]), int(metadata["num_classes"]),
                                      int(metadata["image_shape"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{Path(model_dir) / 'model.json'}: base_network, num_classes and image_shape must be "
                         f"a name and two integers ({type(error).__name__}: {error})") from error
    if network not in BASE_NETWORKS:
        raise ModelError(f"{Path(model_dir) / 'model.json'}: base_network {network!r} is not one of "
                         f"{', '.join(BASE_NETWORKS)}")
    try:
        model = build_ssd(network, num_classes, side)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ModelError(f"{model_dir}: the weights do not fit a {network} SSD with {num_classes} classes at "
                         f"{side} px: {error}") from error
    except SagedetError as error:
        raise ModelError(f"{model_dir}/model.json describes a model sagedet cannot build: {error}") from error
    return model.eval(), metadata


def model_dir_of(model: Path, work: Path, option: str = "--model") -> Path:
    """A model folder, a folder holding one model.tar.gz, or the archive itself (extracted into ``work``)."""
    if model.is_file() and model.name.endswith(ARCHIVE_SUFFIXES):
        safe_extract_tar(model, work)
        return find_model_dir(work, work / "extracted")
    if not model.exists():
        raise ConfigError(f"{option} {model}: no such folder or model archive")
    return find_model_dir(model, work)
