"""Ground Truth augmented manifests (object detection): JSON lines, one per image::

    {"source-ref": "s3://bucket/images/dog1.jpg",
     "bounding-box": {"image_size": [{"width": 500, "height": 400, "depth": 3}],
                      "annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128}]},
     "bounding-box-metadata": {"class-map": {"0": "dog"}, "type": "groundtruth/object-detection"}}

Boxes are pixels, origin top-left. Read: the label attribute is ``--label-attribute``, else the one
attribute holding ``annotations``; each ``source-ref`` (an S3 URI or a relative path) is found under
``--images`` (default: the manifest's folder) by the longest tail of its path that exists there, as
training finds it in a File-mode channel. Written: one line per image with the label attribute
``--label-attribute`` (default ``bounding-box``) and its ``-metadata`` (``class-map``, ``type``); the
images are copied beside the manifest, and ``source-ref`` is their relative path, or ``--s3-prefix``
followed by it (upload the manifest's folder to that prefix).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import DataError
from ..annotations import ClassNames, kind
from ..manifest import MANIFEST_TEXT, METADATA_SUFFIX, SOURCE_REF, find_image, label_attribute, label_objects
from ..textfile import read_text
from .dataset import (ANY_CLASS_ID, Dataset, Item, Options, claim, collect, copy_images, image_file_item,
                      image_size_list, pixel_annotation_list, read_class_list, relative_to, write_file)

DEFAULT_ATTRIBUTE = "bounding-box"
LABEL_TYPE = "groundtruth/object-detection"


def read(src: Path, options: Options) -> Dataset:
    root = options.images or src.parent
    num_classes = len(read_class_list(options.classes)) if options.classes else ANY_CLASS_ID
    names = ClassNames(num_classes)
    lines = [(number, text) for number, text in enumerate(read_text(src, MANIFEST_TEXT).splitlines(), 1)
             if text.strip()]

    def item(numbered: tuple[int, str]) -> Item:
        where = f"{src}: line {numbered[0]}"
        try:
            line = json.loads(numbered[1])
        except ValueError as error:
            raise DataError(f"{where}: is not valid JSON: {error}") from None
        if not isinstance(line, dict) or not isinstance(line.get(SOURCE_REF), str):
            raise DataError(f"{where}: must be a JSON object with '{SOURCE_REF}' (the image's S3 URI or path), "
                            f"got {kind(line)}")
        attribute = options.label_attribute or label_attribute(where, line)
        if attribute not in line:
            raise DataError(f"{where}: has no label attribute {attribute!r} (attributes: {', '.join(line)})")
        reference = line[SOURCE_REF]
        path = find_image(root, reference)
        if path is None:
            raise DataError(f"{where}: image {reference!r} not found under {root}; looked for the tails of its path "
                            "there (--images names the folder holding the images)")
        metadata = line.get(attribute + METADATA_SUFFIX)
        if isinstance(metadata, dict) and "class-map" in metadata:
            names.add_class_map(f"{where}: '{attribute}{METADATA_SUFFIX}'", metadata["class-map"])
        return image_file_item(where, path, relative_to(path, root),
                               lambda width, height: label_objects(f"{where}: '{attribute}'", line[attribute], width,
                                                                   height, num_classes))

    items = collect(lines, item, str(src))
    if not items:
        raise DataError(f"{src}: holds no lines")
    return Dataset(items, dict(sorted(names.names.items())))


def write(dataset: Dataset, dst: Path, options: Options) -> list[Path]:
    claim(dst)
    attribute = options.label_attribute or DEFAULT_ATTRIBUTE
    paths = copy_images(dataset.items, dst.parent)
    class_map = {str(i): name for i, name in enumerate(dataset.all_class_names())}
    lines = []
    for path, item in zip(paths, dataset.items):
        reference = relative_to(path, dst.parent)
        if options.s3_prefix:
            reference = f"{options.s3_prefix.rstrip('/')}/{reference}"
        lines.append(json.dumps({
            SOURCE_REF: reference,
            attribute: {"image_size": image_size_list(item), "annotations": pixel_annotation_list(item)},
            attribute + METADATA_SUFFIX: {"class-map": class_map, "type": LABEL_TYPE, "human-annotated": "yes"},
        }) + "\n")
    write_file(dst, "".join(lines))
    return [dst]
