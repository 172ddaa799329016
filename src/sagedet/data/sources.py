"""Open the train and validation channels as training data, whatever their format and input mode:

============================ ================================= ==================================
format                       File / FastFile mode              Pipe mode
============================ ================================= ==================================
image+JSON                   ImageJsonSource                   (refused by sagemaker.channels)
RecordIO (.rec)              RecordIOSource (random access)    PipeStream of records
augmented manifest           ManifestSource (.manifest files)  PipeStream of image/label records
============================ ================================= ==================================
"""

from __future__ import annotations

from functools import partial

from ..sagemaker.channels import AUGMENTED_MANIFEST, IMAGE_JSON, RECORDIO, Channel, DataChannels
from . import manifest, recordio_source
from .annotations import ClassNames
from .imagejson import ImageJsonSource
from .loaders import TrainingData
from .manifest import ManifestSource
from .pipe import PipeStream
from .recordio_source import RecordIOSource


def open_sources(channels: DataChannels, num_classes: int, label_width: int | None = None
                 ) -> tuple[TrainingData, TrainingData]:
    """The (train, validation) data; File-mode sources check their data as they index it."""
    if channels.format == IMAGE_JSON:
        return tuple(  # type: ignore[return-value]
            ImageJsonSource(images.path, annotations.path, num_classes, images.name)
            for images, annotations in ((channels.train, channels.train_annotation),
                                        (channels.validation, channels.validation_annotation)))
    return (_open(channels.train, channels.format, num_classes, label_width),
            _open(channels.validation, channels.format, num_classes, label_width))


def _open(channel: Channel, data_format: str, num_classes: int, label_width: int | None) -> TrainingData:
    if channel.input_mode == "Pipe":
        if data_format == RECORDIO:
            parse = partial(recordio_source.stream_samples, num_classes=num_classes, label_width=label_width)
            return PipeStream(channel.path, channel.name, parse)
        names = ClassNames(num_classes)  # filled from the metadata attributes' class-map as the records arrive
        parse = partial(manifest.stream_samples, num_classes=num_classes, class_names=names)
        return PipeStream(channel.path, channel.name, parse, class_names=names.names)
    if data_format == RECORDIO:
        return RecordIOSource(channel.path, num_classes, label_width, channel.name)
    assert data_format == AUGMENTED_MANIFEST, data_format
    return ManifestSource(channel.path, num_classes, channel.name)


def class_names(num_classes: int, *sources: TrainingData) -> list[str]:
    """One name per class id: from the annotations' categories, else ``class_<id>``. A Pipe-mode
    manifest stream learns its names (metadata ``class-map``) as it is read: ask after a pass."""
    names: dict[int, str] = {}
    for source in sources:
        for class_id, name in source.class_names.items():
            names.setdefault(int(class_id), str(name))
    return [names.get(i, f"class_{i}") for i in range(num_classes)]
