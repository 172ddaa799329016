"""The ``sagedet`` command line: ``sagedet train|predict|invoke|export|layers|fetch-weights|sample-data|convert|inspect``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import SagedetError
from .sagemaker.hyperparameters import BASE_NETWORKS


def _train(args: argparse.Namespace) -> int:
    from .train.job import main

    return main()


def _layers(args: argparse.Namespace) -> int:
    from .model.backbones import build_base_network

    for name in build_base_network(args.base_network, 300, None).layers:
        print(name)
    return 0


def _fetch_weights(args: argparse.Namespace) -> int:
    from .model.weights import fetch_pretrained

    for path in fetch_pretrained(args.base_network or None):
        print(path)
    return 0


def _sample_data(args: argparse.Namespace) -> int:
    from .data.synthetic import SYNTHETIC_CLASSES, write_synthetic_dataset
    from .sagemaker.local import write_training_config
    from .sagemaker.paths import SageMakerPaths

    paths = SageMakerPaths(Path(args.opt_ml))
    write_synthetic_dataset(paths.data_dir, "train", args.train, seed=1)
    write_synthetic_dataset(paths.data_dir, "validation", args.validation, seed=2)
    hyperparameters = {"num_classes": len(SYNTHETIC_CLASSES), "num_training_samples": args.train,
                       "base_network": args.base_network, "use_pretrained_model": 0, "image_shape": args.image_shape,
                       "epochs": args.epochs, "mini_batch_size": args.mini_batch_size, "optimizer": "adam",
                       "learning_rate": args.learning_rate, "lr_scheduler_step": args.lr_scheduler_step}
    write_training_config(paths, hyperparameters)
    print(f"wrote a SageMaker /opt/ml tree with {args.train} training and {args.validation} validation images "
          f"({', '.join(SYNTHETIC_CLASSES)}) under {paths.root}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .serve.local import predict_files

    failures = predict_files(args.images, args.model, args.threshold, args.max_detections, args.format, args.draw,
                             args.draw_min_score, args.device, precision=args.precision)
    return 1 if failures else 0


def _invoke(args: argparse.Namespace) -> int:
    from .serve.client import invoke_files, wait_for_ping

    endpoint = args.endpoint.rstrip("/")
    wait_for_ping(endpoint, args.wait)
    written = invoke_files(endpoint, args.images, args.output, args.custom_attributes, args.draw_min_score)
    print(f"{len(written)} answers from {endpoint}/invocations written, drawn, to {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export.writer import export_model

    manifest = export_model(args.model, args.output, args.format)
    for name, entry in manifest["files"].items():
        print(f"{args.output / entry['file']}: {name}, largest difference from eager "
              f"{entry['largest_difference_from_eager']:.2g} (allowed {manifest['tolerance']:g})")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .data.convert.dataset import Options
    from .data.convert.formats import convert

    options = Options(images=args.images, annotations=args.annotations, classes=args.classes,
                      s3_prefix=args.s3_prefix, label_attribute=args.label_attribute, label_header=args.label_header)
    dataset, written = convert(args.source_format, args.target_format, args.src, args.dst, options)
    for note in dataset.notes:
        print(f"sagedet: note: {note}", file=sys.stderr)
    objects = sum(len(item.objects.labels) for item in dataset.items)
    print(f"{len(dataset.items)} images, {objects} objects, {dataset.num_classes} classes "
          f"({', '.join(dataset.all_class_names())}) written as {args.target_format}: {', '.join(map(str, written))}")
    return 0


def _add_convert(commands: argparse._SubParsersAction) -> None:
    import textwrap

    from .data.convert import LAYOUTS

    layouts = "\n".join(textwrap.fill(layout, 100, initial_indent=f"  {name:11}", subsequent_indent=" " * 13)
                        for name, layout in LAYOUTS.items())
    convert = commands.add_parser(
        "convert", help="convert an object detection data set between formats (COCO, VOC, YOLO, manifest, "
                        "image+JSON, RecordIO)", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert an object detection data set from one format to another: images are copied as they\n"
                    "are (never re-encoded), boxes converted, class names carried along. Nothing is overwritten:\n"
                    "the destination must not exist yet (an empty folder is fine).",
        epilog=f"formats (SRC / DST):\n{layouts}\n\nexamples:\n"
               "  sagedet convert --from coco --to recordio instances_train.json out/train.rec --images train2017\n"
               "  sagedet convert --from recordio --to imagejson train.rec out/train   (JSONs in out/train_annotation)")
    convert.add_argument("--from", dest="source_format", required=True, choices=LAYOUTS, help="the source's format")
    convert.add_argument("--to", dest="target_format", required=True, choices=LAYOUTS, help="the format written")
    convert.add_argument("src", type=Path, metavar="SRC")
    convert.add_argument("dst", type=Path, metavar="DST")
    convert.add_argument("--images", type=Path, metavar="DIR", help="the source's image folder (coco, voc, manifest)")
    convert.add_argument("--annotations", type=Path, metavar="DIR",
                         help="the source's annotation JSON folder (imagejson; default: SRC_annotation)")
    convert.add_argument("--classes", type=Path, metavar="FILE",
                         help="class names, one per line (class id = line number - 1): VOC's name-to-id order, "
                              "names for YOLO and RecordIO; replaces the names the source carries")
    convert.add_argument("--s3-prefix", metavar="URI", help="manifest output: source-ref = URI/<image path> "
                                                            "(default: the path relative to the manifest)")
    convert.add_argument("--label-attribute", metavar="NAME", help="the manifest's label attribute (default: found "
                                                                   "when reading, bounding-box when writing)")
    convert.add_argument("--label-header", type=int, choices=(2, 4), default=2,
                         help="RecordIO output: label header width A, 2 (default) or 4 with the image's width and "
                              "height (GluonCV)")
    convert.set_defaults(run=_convert)


def _inspect(args: argparse.Namespace) -> int:
    from .data.inspect import print_records

    bad = print_records(args.file, args.limit, args.num_classes)
    if bad:
        print(f"sagedet: {bad} record(s) of {args.file} have an error (see their 'error' keys)", file=sys.stderr)
    return 1 if bad else 0


def _add_inspect(commands: argparse._SubParsersAction) -> None:
    inspect = commands.add_parser("inspect", help="describe each record of an MXNet RecordIO .rec file as a JSON line "
                                                  "(header, label, image format and size, sha256, objects)")
    inspect.add_argument("file", type=Path, metavar="FILE.rec")
    inspect.add_argument("--limit", type=int, metavar="N", help="only the first N records")
    inspect.add_argument("--num-classes", type=int, metavar="N", help="also check that class ids are below N")
    inspect.set_defaults(run=_inspect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagedet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="run the SageMaker training job in /opt/ml (or $SAGEDET_OPT_ML)").set_defaults(
        run=_train)
    layers = commands.add_parser("layers", help="list the base network's layer names for freeze_layer_pattern")
    layers.add_argument("base_network", choices=BASE_NETWORKS)
    layers.set_defaults(run=_layers)
    fetch = commands.add_parser("fetch-weights", help="download torchvision's ImageNet weights into the local cache "
                                                      "(for image builds; needs internet access)")
    fetch.add_argument("base_network", nargs="*", choices=BASE_NETWORKS)
    fetch.set_defaults(run=_fetch_weights)
    sample = commands.add_parser("sample-data", help="write a generated data set and its config as a local /opt/ml tree")
    sample.add_argument("opt_ml", help="the folder to use as /opt/ml")
    sample.add_argument("--train", type=int, default=240)
    sample.add_argument("--validation", type=int, default=60)
    sample.add_argument("--base-network", default="mobilenet-v3")
    sample.add_argument("--image-shape", type=int, default=128)
    sample.add_argument("--epochs", type=int, default=20)
    sample.add_argument("--mini-batch-size", type=int, default=16)
    sample.add_argument("--learning-rate", type=float, default=0.001)
    sample.add_argument("--lr-scheduler-step", default="", help="e.g. '16,21'")
    sample.set_defaults(run=_sample_data)
    predict = commands.add_parser("predict", help="detect objects in local image files with a trained model, as the "
                                                  "server would answer (one JSON line per image)")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG or PNG files")
    predict.add_argument("--model", required=True, type=Path, metavar="DIR",
                         help="the model folder (model.safetensors + model.json), or a model.tar.gz")
    predict.add_argument("--threshold", type=float, default=0.0, help="lowest score reported (default 0: all)")
    predict.add_argument("--max-detections", type=int, default=200, help="most detections per image (default 200)")
    predict.add_argument("--format", choices=("prediction", "annotation", "verbose"), default="prediction",
                         help="the server's response form: normalized corners (default), pixels, or with class names")
    predict.add_argument("--draw", type=Path, metavar="DIR",
                         help="also write each image as DIR/<name>.png with its boxes, class names and scores drawn")
    predict.add_argument("--draw-min-score", type=float, default=0.5,
                         help="draw only detections scoring at least this (default 0.5)")
    predict.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    predict.add_argument("--precision", default="auto",
                         help="as the server's SAGEDET_PRECISION: auto (bf16 or fp16 autocast on CUDA; on CPUs with "
                              "bf16 instructions the fastest of bf16 and float32 paths; else float32), float32, bf16 or "
                              "fp16 (CUDA); bf16 and fp16 are checked within 0.05 of float32")
    predict.set_defaults(run=_predict)
    invoke = commands.add_parser("invoke", help="send images to a running server's /invocations; write its answers "
                                                "as JSON and drawn as PNG")
    invoke.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    invoke.add_argument("--endpoint", default="http://127.0.0.1:8080", help="the server (default %(default)s)")
    invoke.add_argument("--output", required=True, type=Path, metavar="DIR")
    invoke.add_argument("--custom-attributes", help="X-Amzn-SageMaker-Custom-Attributes, e.g. threshold=0.3")
    invoke.add_argument("--draw-min-score", type=float, default=0.5, help="lowest score drawn (default 0.5)")
    invoke.add_argument("--wait", type=float, default=120, help="seconds to wait for /ping (default 120)")
    invoke.set_defaults(run=_invoke)
    export = commands.add_parser("export", help="write TorchScript and ONNX graphs of a trained model (images -> "
                                                "scores, boxes; NMS after), each checked against eager PyTorch")
    export.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="the model folder (model.safetensors + model.json), or a model.tar.gz")
    export.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="where to write model.torchscript.pt, model.onnx and export.json (the model folder "
                             "itself lets the server run model.onnx with ONNX Runtime)")
    export.add_argument("--format", nargs="+", choices=("torchscript", "onnx"), default=["torchscript", "onnx"])
    export.set_defaults(run=_export)
    _add_convert(commands)
    _add_inspect(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SagedetError as error:
        print(f"sagedet: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
