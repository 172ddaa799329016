"""Conversion of object detection data sets between formats, through one in-memory form
(:mod:`sagedet.data.convert.dataset`): every reader makes a :class:`Dataset`, every writer takes one,
so any format converts to any other. One module per format, each reading and writing it.
"""

from __future__ import annotations

LAYOUTS = {
    "coco": "a COCO instances .json file; images: file_name under --images (default: the JSON's folder); "
            "written images go beside the JSON",
    "voc": "a Pascal VOC folder: Annotations/*.xml, JPEGImages/ (or --images), classes.txt",
    "yolo": "a YOLO folder: images/ and labels/*.txt (or each .txt beside its image), classes.txt or obj.names",
    "manifest": "a Ground Truth augmented .manifest (JSON lines); images: source-ref under --images (default: "
                "the manifest's folder); written images go beside the manifest",
    "imagejson": "SageMaker's image+JSON layout: the image folder, its JSONs in <folder>_annotation (or "
                 "--annotations)",
    "recordio": "an MXNet .rec file (images inside), with .idx, .lst and .classes.json beside it",
}
"""Each format's SRC / DST, for ``sagedet convert --help`` (here, so that the help imports nothing heavy)."""
