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
        network, num_classes, side = (str(metadata["base_network"]), _count(metadata, "num_classes"),
                                      _count(metadata, "image_shape"))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{Path(model_dir) / 'model.json'}: base_network, num_classes and image_shape must be "
                         f"a name and two integers >= 1 ({type(error).__name__}: {error})") from error
    if network not in BASE_NETWORKS:
        raise ModelError(f"{Path(model_dir) / 'model.json'}: base_network {network!r} is not one of "
                         f"{', '.join(BASE_NETWORKS)}")
    check_optional_metadata(metadata, num_classes, Path(model_dir) / "model.json")
    try:
        model = build_ssd(network, num_classes, side)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ModelError(f"{model_dir}: the weights do not fit a {network} SSD with {num_classes} classes at "
                         f"{side} px: {error}") from error
    except SagedetError as error:
        raise ModelError(f"{model_dir}/model.json describes a model sagedet cannot build: {error}") from error
    return model.eval(), metadata


def _count(metadata: dict, key: str) -> int:
    """An integer >= 1 (3.0 too, as JSON may write it), never a silently truncated 3.7 or a boolean."""
    value = metadata[key]
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 1:
        raise ValueError(f"{key} is {value!r}")
    return int(value)


def check_optional_metadata(metadata: dict, num_classes: int, metadata_file: Path) -> None:
    """``nms_threshold`` (default 0.45) a number in (0, 1]; ``class_names`` (default the class ids) null
    or a list of at most ``num_classes`` strings, one per class id from 0 (a shorter list leaves the
    last classes named by their ids). ModelError naming the key, the value and what is allowed."""
    def refuse(key: str, allowed: str):
        shown = repr(metadata[key])
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return ModelError(f"{metadata_file}: {key} {shown}: expected {allowed}")
    if "nms_threshold" in metadata:
        value = metadata["nms_threshold"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise refuse("nms_threshold", "a number in (0, 1], the overlap (IoU) above which NMS drops the lower-"
                                          "scoring of two boxes of a class (default 0.45)")
    names = metadata.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) > num_classes
                              or not all(isinstance(name, str) for name in names)):
        raise refuse("class_names", f"null or a list of at most num_classes={num_classes} strings, the name of each "
                                    f"class id from 0 (classes past the list's end are named by their ids)")


def model_dir_of(model: Path, work: Path, option: str = "--model") -> Path:
    """A model folder, a folder holding one model.tar.gz, or the archive itself (extracted into ``work``)."""
    if model.is_file() and model.name.endswith(ARCHIVE_SUFFIXES):
        safe_extract_tar(model, work)
        return find_model_dir(work, work / "extracted")
    if not model.exists():
        raise ConfigError(f"{option} {model}: no such folder or model archive")
    return find_model_dir(model, work)
