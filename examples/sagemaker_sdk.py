#!/usr/bin/env python3
"""Train, tune and deploy sagedet with the SageMaker Python SDK (v2: pip install "sagemaker>=2.200,<3").

The same calls as for SageMaker's built-in Object Detection algorithm, with our image URI: its
metric definitions (``METRIC_DEFINITIONS``), the tuning ranges its documentation recommends
(``hyperparameter_ranges()``), the objective ``validation:mAP`` (maximize), and the image+JSON
channels ``train``, ``validation``, ``train_annotation``, ``validation_annotation``.

On AWS (needs an IAM role for SageMaker and the image in ECR: ``make push``):

    python examples/sagemaker_sdk.py train  --image-uri URI --role ARN --data s3://bucket/prefix --output s3://bucket/out
    python examples/sagemaker_sdk.py tune   --image-uri URI --role ARN --data s3://bucket/prefix --output s3://bucket/out
    python examples/sagemaker_sdk.py deploy --image-uri URI --role ARN --model-data s3://.../model.tar.gz --image dog.jpg

``--data`` holds one folder per channel (``train/``, ``train_annotation/``, ...).

On this machine, with no AWS at all (SDK local mode: docker compose runs the image; dummy credentials):

    python examples/sagemaker_sdk.py local --image-uri sagedet:cpu --data OPT_ML/input/data --work DIR

trains on the local channels, deploys the model.tar.gz to a local endpoint, sends it one image, runs a
local batch transform of the validation images (``strategy="SingleRecord"``: see
:func:`local_batch_transform`) and prints a JSON summary (``make sdk-local`` does all of it; tests/docker/test_sdk_local_mode.py checks it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

# The built-in algorithm's metrics, as its users register them (CONTRACT §2): unchanged for sagedet.
METRIC_DEFINITIONS = [
    {"Name": "train:cross_entropy",
     "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train cross_entropy <loss>=(\S+)"},
    {"Name": "train:smooth_l1", "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train smooth_l1 <loss>=(\S+)"},
    {"Name": "validation:mAP", "Regex": r"#quality_metric: host=\S+, epoch=\S+, validation mAP <score>=\((\S+)\)"},
    {"Name": "train:throughput", "Regex": r"#throughput_metric: host=\S+, train throughput=(\S+) records/second"},
    {"Name": "train:progress", "Regex": r"#progress_metric: host=\S+, completed (\S+) %"},
]
OBJECTIVE = "validation:mAP"

IMAGE_CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")

# A small job for the generated data set of `sagedet sample-data` (3 classes).
DEMO_HYPERPARAMETERS = {
    "num_classes": 3, "num_training_samples": 240, "base_network": "mobilenet-v3", "use_pretrained_model": 0,
    "image_shape": 128, "epochs": 20, "mini_batch_size": 16, "optimizer": "adam", "learning_rate": 0.001,
}


def hyperparameter_ranges() -> dict:
    """The tuning ranges the built-in's documentation recommends (CONTRACT §1)."""
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter, IntegerParameter

    return {
        "learning_rate": ContinuousParameter(1e-6, 0.5),
        "mini_batch_size": IntegerParameter(8, 64),
        "momentum": ContinuousParameter(0.0, 0.999),
        "optimizer": CategoricalParameter(["sgd", "adam", "rmsprop", "adadelta"]),
        "weight_decay": ContinuousParameter(0.0, 0.999),
    }


def channels(data: str, content_type: str = "image/jpeg") -> dict:
    """One TrainingInput per image+JSON channel folder under ``data`` (an s3:// prefix or file://)."""
    from sagemaker.inputs import TrainingInput

    return {name: TrainingInput(f"{data.rstrip('/')}/{name}", content_type=content_type) for name in IMAGE_CHANNELS}


def estimator(image_uri: str, role: str, instance_type: str, output_path: str, hyperparameters: dict,
              session=None, instance_count: int = 1):
    from sagemaker.estimator import Estimator

    return Estimator(image_uri=image_uri, role=role, instance_count=instance_count, instance_type=instance_type,
                     output_path=output_path, hyperparameters=hyperparameters, metric_definitions=METRIC_DEFINITIONS,
                     sagemaker_session=session, volume_size=50, max_run=24 * 3600)


def predictor_for(endpoint):
    """Images in, the built-in's JSON out."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.serializers import IdentitySerializer

    endpoint.serializer = IdentitySerializer(content_type="image/jpeg")
    endpoint.deserializer = JSONDeserializer()
    return endpoint


def hyperparameters_of(args: argparse.Namespace) -> dict:
    values = json.loads(args.hyperparameters) if args.hyperparameters else dict(DEMO_HYPERPARAMETERS)
    if getattr(args, "epochs", None):
        values["epochs"] = args.epochs
    return values


def train(args: argparse.Namespace) -> int:
    job = estimator(args.image_uri, args.role, args.instance_type, args.output, hyperparameters_of(args))
    job.fit(channels(args.data))
    print(job.model_data)
    return 0


def tune(args: argparse.Namespace) -> int:
    from sagemaker.tuner import HyperparameterTuner

    job = estimator(args.image_uri, args.role, args.instance_type, args.output, hyperparameters_of(args))
    tuner = HyperparameterTuner(job, objective_metric_name=OBJECTIVE, hyperparameter_ranges=hyperparameter_ranges(),
                                metric_definitions=METRIC_DEFINITIONS, objective_type="Maximize",
                                max_jobs=args.max_jobs, max_parallel_jobs=args.max_parallel_jobs)
    tuner.fit(channels(args.data))
    print(tuner.best_training_job())
    return 0


def deploy(args: argparse.Namespace) -> int:
    from sagemaker.model import Model

    model = Model(image_uri=args.image_uri, model_data=args.model_data, role=args.role)
    endpoint = predictor_for(model.deploy(initial_instance_count=1, instance_type=args.instance_type))
    print(json.dumps(endpoint.predict(Path(args.image).read_bytes()))[:2000])
    if args.delete:
        endpoint.delete_endpoint()
    return 0


# --- SDK local mode ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local(args: argparse.Namespace) -> int:
    """Train, deploy and predict with SDK local mode, with no AWS account: dummy credentials, the
    SDK's telemetry off, file:// channels and output, the image from the local engine."""
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    config = work / "sagemaker-config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    os.environ.update({"SAGEMAKER_USER_CONFIG_OVERRIDE": str(config), "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                       "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")})
    from sagemaker.local import LocalSession

    session = LocalSession()
    port = args.port or free_port()
    session.config = {"local": {"local_code": True, "serving_port": port, "container_root": str(work)}}
    hyperparameters = hyperparameters_of(args)
    data = Path(args.data).resolve()
    summary: dict = {"image_uri": args.image_uri, "serving_port": port}

    started = time.monotonic()
    job = estimator(args.image_uri, "arn:aws:iam::111111111111:role/SageMakerRole", "local",
                    f"file://{work / 'output'}", hyperparameters, session=session)
    job.fit(channels(f"file://{data}"), wait=True, logs=True)
    summary["model_data"] = job.model_data
    summary["train_seconds"] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    endpoint = predictor_for(job.deploy(initial_instance_count=1, instance_type="local"))
    try:
        summary["deploy_seconds"] = round(time.monotonic() - started, 1)
        image = Path(args.image) if args.image else sorted((data / "validation").rglob("*.jpg"))[0]
        answer = endpoint.predict(image.read_bytes())
        summary["image"] = str(image)
        summary["detections"] = len(answer["prediction"])
        summary["best"] = answer["prediction"][:3]
    finally:
        endpoint.delete_endpoint()
        try:
            endpoint.delete_model()
        except Exception:  # noqa: BLE001 - the endpoint is gone already; a leftover model entry is harmless
            pass
    started = time.monotonic()
    summary.update(local_batch_transform(job, data / "validation", work / "transform"))
    summary["transform_seconds"] = round(time.monotonic() - started, 1)
    print("SDK local mode: " + json.dumps(summary))
    return 0


def local_batch_transform(job, images: Path, output: Path) -> dict:
    """A batch transform of a folder of JPEGs in local mode, one image per request. The strategy must be
    given in the SDK's spelling: without it, local mode takes the container's /execution-parameters
    answer, "SINGLE_RECORD" (the spelling SageMaker documents for containers), which its own batch
    code does not know (it knows SingleRecord and MultiRecord)."""
    folder = sorted(images.rglob("*.jpg"))[0].parent
    transformer = job.transformer(instance_count=1, instance_type="local", strategy="SingleRecord",
                                  output_path=f"file://{output}", accept="application/json")
    transformer.transform(f"file://{folder}", content_type="image/jpeg", split_type=None, wait=True, logs=False)
    answers = sorted(output.rglob("*.jpg.out"))
    first = json.loads(answers[0].read_text()) if answers else {}
    return {"transform_inputs": len(list(folder.glob("*.jpg"))), "transform_outputs": len(answers),
            "transform_first": {"file": answers[0].name if answers else None,
                                "detections": len(first.get("prediction", []))}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, run in (("train", train), ("tune", tune), ("deploy", deploy), ("local", local)):
        command = commands.add_parser(name)
        command.set_defaults(run=run)
        command.add_argument("--image-uri", required=True, help="the image (ECR URI; a local tag in local mode)")
        if name != "local":
            command.add_argument("--role", required=True, help="the IAM role SageMaker runs the job with")
            command.add_argument("--instance-type", default="ml.g5.xlarge" if name != "deploy" else "ml.m5.large")
    for name in ("train", "tune"):
        commands.choices[name].add_argument("--data", required=True, help="s3:// prefix with one folder per channel")
        commands.choices[name].add_argument("--output", required=True, help="s3:// prefix for model.tar.gz")
    for name in ("train", "tune", "local"):
        commands.choices[name].add_argument("--hyperparameters",
                                            help="a JSON object (default: a small job for `sagedet sample-data`'s data)")
    commands.choices["tune"].add_argument("--max-jobs", type=int, default=8)
    commands.choices["tune"].add_argument("--max-parallel-jobs", type=int, default=2)
    commands.choices["deploy"].add_argument("--model-data", required=True, help="s3://.../model.tar.gz")
    commands.choices["deploy"].add_argument("--image", required=True, help="a JPEG to send to the endpoint")
    commands.choices["deploy"].add_argument("--delete", action="store_true", help="delete the endpoint afterwards")
    commands.choices["local"].add_argument("--data", required=True, help="a local folder with one folder per channel")
    commands.choices["local"].add_argument("--work", required=True, help="a folder for the SDK's files and outputs")
    commands.choices["local"].add_argument("--epochs", type=int, help="override the hyperparameters' epochs")
    commands.choices["local"].add_argument("--image", help="the JPEG to send (default: the first validation image)")
    commands.choices["local"].add_argument("--port", type=int, default=0, help="the local endpoint's port (default: free)")
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
