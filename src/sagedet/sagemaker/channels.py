"""inputdataconfig.json → the training job's data channels and their input format.

SageMaker writes ``/opt/ml/input/config/inputdataconfig.json`` as ``{"<channel>": {"ContentType",
"TrainingInputMode": "File|FastFile|Pipe", "S3DistributionType": "FullyReplicated|ShardedByS3Key",
"RecordWrapperType": "None|RecordIO"}}``; each channel's data is in
``/opt/ml/input/data/<channel>/`` (File, FastFile) or in the FIFOs ``<channel>_<epoch>`` next to it
(Pipe).

The built-in Object Detection algorithm knows these channels, and so do we:

- ``train`` and ``validation``, both required;
- image/jpeg, image/png, application/x-image: one image per file, with ``train_annotation`` and
  ``validation_annotation`` holding one JSON per image (File or FastFile mode only);
- application/x-recordio: MXNet RecordIO ``.rec`` files (File or Pipe mode);
- RecordWrapperType RecordIO: an augmented manifest streamed as RecordIO (any ContentType, Pipe
  mode); in File mode (local runs), a folder holding ``.manifest`` files and their images;
- ``model``, application/x-sagemaker-model: a previous job's model, for incremental training.

Other channel names are ignored. Without inputdataconfig.json (a plain ``docker run``) every known
channel folder present under the data folder is a File-mode channel and its content type is
inferred: images when the annotation channels are present, RecordIO when the folder has ``.rec``
files, an augmented manifest when it has ``.manifest`` files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sagedet.errors import ConfigError
from sagedet.sagemaker.config_file import read_json_object
from sagedet.sagemaker.paths import SageMakerPaths

IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_TYPE = "application/json"
RECORDIO_TYPE = "application/x-recordio"
MODEL_TYPE = "application/x-sagemaker-model"
INPUT_MODES = ("File", "FastFile", "Pipe")
DISTRIBUTIONS = ("FullyReplicated", "ShardedByS3Key")
RECORD_WRAPPERS = ("None", "RecordIO")

IMAGE_JSON = "image+json"
RECORDIO = "recordio"
AUGMENTED_MANIFEST = "augmented-manifest"

_DATA_CHANNELS = ("train", "validation")
_ANNOTATION_CHANNELS = ("train_annotation", "validation_annotation")
_KNOWN_CHANNELS = (*_DATA_CHANNELS, *_ANNOTATION_CHANNELS, "model")
_SUPPORTED = (
    f"{', '.join(IMAGE_TYPES)} (with train_annotation and validation_annotation channels), "
    f"{RECORDIO_TYPE}, or an augmented manifest (RecordWrapperType RecordIO)"
)


@dataclass(frozen=True)
class Channel:
    """One channel; ``path`` is its folder (in Pipe mode the FIFOs are ``<path>_<epoch>``)."""

    name: str
    content_type: str
    input_mode: str
    distribution: str
    record_wrapper: str
    path: Path


@dataclass(frozen=True)
class DataChannels:
    train: Channel
    validation: Channel
    train_annotation: Channel | None
    validation_annotation: Channel | None
    model: Channel | None

    @property
    def format(self) -> str:
        """``"image+json"``, ``"recordio"`` or ``"augmented-manifest"``, as train and validation."""
        return _format(self.train)


def _format(channel: Channel) -> str:
    """The data format of a train or validation channel."""
    if channel.record_wrapper == "RecordIO":
        return AUGMENTED_MANIFEST
    if channel.content_type == RECORDIO_TYPE:
        if channel.input_mode != "Pipe" and _has_manifests(channel.path) and not _has_files(channel.path, ".rec"):
            return AUGMENTED_MANIFEST  # a .manifest and its images in a File-mode folder (local runs)
        return RECORDIO
    if channel.content_type in IMAGE_TYPES:
        return IMAGE_JSON
    raise ConfigError(
        f"channel {channel.name!r} has unsupported ContentType {channel.content_type!r}; "
        f"supported: {_SUPPORTED}"
    )


def _has_files(folder: Path, suffix: str) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.rglob(f"*{suffix}"))


def _has_manifests(folder: Path) -> bool:
    return _has_files(folder, ".manifest")


def _normalise_content_type(value: str) -> str:
    """``"Image/JPEG; charset=binary"`` → ``"image/jpeg"``."""
    return value.split(";")[0].strip().lower()


def _canonical(channel: str, key: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value`` spelt as in ``allowed`` (case-insensitive), else a ConfigError."""
    for option in allowed:
        if isinstance(value, str) and value.strip().lower() == option.lower():
            return option
    raise ConfigError(
        f"channel {channel!r} has {key} {value!r}; expected one of {', '.join(allowed)}"
    )


def _read_config(paths: SageMakerPaths) -> dict[str, object]:
    """inputdataconfig.json's channel entries, or a default entry per channel folder present."""
    path = paths.input_data_config_file
    if not path.exists():
        data_dir = paths.data_dir
        folders = data_dir.iterdir() if data_dir.is_dir() else ()
        return {folder.name: {} for folder in sorted(folders) if folder.is_dir()}
    config = read_json_object(path, "input data config")
    for name in _KNOWN_CHANNELS:
        if name in config and not isinstance(config[name], dict):
            raise ConfigError(f"input data config {path}: channel {name!r} must be a JSON object")
    return config


def _infer_content_type(name: str, entries: dict[str, dict], paths: SageMakerPaths) -> str:
    """The content type of a channel that has none (always so without inputdataconfig.json)."""
    if name == "model":
        return MODEL_TYPE
    if name in _ANNOTATION_CHANNELS:
        return JSON_TYPE
    if all(annotation in entries for annotation in _ANNOTATION_CHANNELS):
        return IMAGE_TYPES[-1]
    if str(entries[name].get("RecordWrapperType", "")).lower() == "recordio":
        return RECORDIO_TYPE  # an augmented manifest, streamed as RecordIO
    if _has_files(paths.channel_dir(name), ".rec") or _has_manifests(paths.channel_dir(name)):
        return RECORDIO_TYPE
    raise ConfigError(
        f"channel {name!r} has no ContentType and it cannot be inferred; set it to one of "
        f"{_SUPPORTED}"
    )


def _channel(name: str, entries: dict[str, dict], paths: SageMakerPaths) -> Channel:
    entry = entries[name]
    content_type = entry.get("ContentType")
    if isinstance(content_type, str) and content_type.strip():
        content_type = _normalise_content_type(content_type)
    else:
        content_type = _infer_content_type(name, entries, paths)
    mode = entry.get("TrainingInputMode", "File")
    distribution = entry.get("S3DistributionType", "FullyReplicated")
    wrapper = entry.get("RecordWrapperType", "None")
    channel = Channel(
        name=name,
        content_type=content_type,
        input_mode=_canonical(name, "TrainingInputMode", mode, INPUT_MODES),
        distribution=_canonical(name, "S3DistributionType", distribution, DISTRIBUTIONS),
        record_wrapper=_canonical(name, "RecordWrapperType", wrapper, RECORD_WRAPPERS),
        path=paths.channel_dir(name),
    )
    if channel.input_mode != "Pipe" and not channel.path.is_dir():
        raise ConfigError(
            f"channel {name!r} ({channel.input_mode} mode): folder {channel.path} does not exist"
        )
    return channel


def _check_image_json(channels: dict[str, Channel]) -> None:
    """Images and their JSON annotations: four channels, none in Pipe mode."""
    for channel in channels.values():
        if channel.name != "model" and channel.input_mode == "Pipe":
            raise ConfigError(
                f"channel {channel.name!r}: Pipe mode is not supported for image files with JSON "
                "annotations; use File or FastFile mode, or for Pipe mode RecordIO "
                f"({RECORDIO_TYPE}) or an augmented manifest"
            )
    missing = [name for name in _ANNOTATION_CHANNELS if name not in channels]
    if missing:
        raise ConfigError(
            f"image channels (ContentType {channels['train'].content_type}) need the channels "
            f"{' and '.join(_ANNOTATION_CHANNELS)} holding one JSON per image; missing: "
            f"{', '.join(missing)}"
        )
    for name in _ANNOTATION_CHANNELS:
        content_type = channels[name].content_type
        if content_type not in (JSON_TYPE, *IMAGE_TYPES):
            raise ConfigError(
                f"channel {name!r} has unsupported ContentType {content_type!r}; expected "
                f"{JSON_TYPE} (or the image channels' type)"
            )


def _check_model(channel: Channel) -> None:
    if channel.content_type != MODEL_TYPE:
        raise ConfigError(
            f"channel 'model' has ContentType {channel.content_type!r}; expected {MODEL_TYPE}"
        )
    if channel.input_mode == "Pipe":
        raise ConfigError("channel 'model' must use File mode, not Pipe")


def load_channels(paths: SageMakerPaths) -> DataChannels:
    """Read, validate and classify the training job's channels."""
    config = _read_config(paths)
    entries = {name: config[name] for name in _KNOWN_CHANNELS if name in config}
    if "train" not in entries:
        raise ConfigError(
            f"no 'train' channel (found: {', '.join(config) or 'none'}); the training data "
            f"must be in a channel named 'train' ({paths.channel_dir('train')})"
        )
    if "validation" not in entries:
        raise ConfigError(
            "no 'validation' channel: the built-in Object Detection algorithm requires a "
            "validation channel (validation:mAP is computed on it); add one named 'validation' "
            f"({paths.channel_dir('validation')})"
        )
    channels = {name: _channel(name, entries, paths) for name in entries}
    train, validation = channels["train"], channels["validation"]
    data_format = _format(train)
    if _format(validation) != data_format:
        raise ConfigError(
            f"channels 'train' ({data_format}) and 'validation' ({_format(validation)}) must hold "
            "the same data format"
        )
    if data_format == IMAGE_JSON:
        _check_image_json(channels)
    if "model" in channels:
        _check_model(channels["model"])
    annotated = data_format == IMAGE_JSON
    return DataChannels(
        train=train,
        validation=validation,
        train_annotation=channels["train_annotation"] if annotated else None,
        validation_annotation=channels["validation_annotation"] if annotated else None,
        model=channels.get("model"),
    )
