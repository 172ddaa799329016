"""Open the train and validation channels as sample sources, whatever their format."""

from __future__ import annotations

from ..errors import ConfigError
from ..sagemaker.channels import IMAGE_JSON, DataChannels
from .imagejson import ImageJsonSource
from .sample import SampleSource


def open_sources(channels: DataChannels, num_classes: int) -> tuple[SampleSource, SampleSource]:
    """The (train, validation) sources; each checks its data as it indexes it."""
    if channels.format == IMAGE_JSON:
        return tuple(  # type: ignore[return-value]
            ImageJsonSource(images.path, annotations.path, num_classes, images.name)
            for images, annotations in ((channels.train, channels.train_annotation),
                                        (channels.validation, channels.validation_annotation)))
    raise ConfigError(
        f"training data in the {channels.format} format is not supported by this version of sagedet yet; "
        "provide image+JSON channels (train, train_annotation, validation, validation_annotation)")


def class_names(num_classes: int, *sources: SampleSource) -> list[str]:
    """One name per class id: from the annotations' categories, else ``class_<id>``."""
    names: dict[int, str] = {}
    for source in sources:
        for class_id, name in source.class_names.items():
            names.setdefault(int(class_id), str(name))
    return [names.get(i, f"class_{i}") for i in range(num_classes)]
