"""The ``sagedet`` command line: ``sagedet train|predict|invoke|layers|fetch-weights|sample-data``."""

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
    from .data.synthetic import SYNTHETIC_CLASSES
    from .data.synthetic import write_synthetic_dataset
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
                             args.draw_min_score, args.device)
    return 1 if failures else 0


def _invoke(args: argparse.Namespace) -> int:
    from .serve.client import invoke_files, wait_for_ping

    endpoint = args.endpoint.rstrip("/")
    wait_for_ping(endpoint, args.wait)
    written = invoke_files(endpoint, args.images, args.output, args.custom_attributes, args.draw_min_score)
    print(f"{len(written)} answers from {endpoint}/invocations written, drawn, to {args.output}")
    return 0


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
    sample.add_argument("--learning-rate", type=float, default=0.003)
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
