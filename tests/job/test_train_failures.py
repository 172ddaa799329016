"""Each way a training job can fail: a clear reason in /opt/ml/output/failure and a non-zero exit.

These run the real ``container/train`` entrypoint in a subprocess on a temporary /opt/ml tree.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from conftest import failure_reason, run_train, set_hyperparameters


def _fails_with(paths, *fragments: str, code: int = 1) -> str:
    result = run_train(paths, timeout=300)
    assert result.returncode == code, result.stdout + result.stderr
    reason = failure_reason(paths)
    for fragment in fragments:
        assert fragment in reason, f"{fragment!r} not in failure reason:\n{reason}"
    assert "Traceback" not in reason  # a user error is explained, not dumped
    return reason


def _first_annotation(paths, channel="train"):
    return sorted((paths.data_dir / f"{channel}_annotation").glob("*.json"))[0]


def test_invalid_hyperparameter_value_names_key_value_and_allowed(job):
    set_hyperparameters(job, mini_batch_size="abc", optimizer="lbfgs")
    _fails_with(job, "'mini_batch_size'='abc'", "integer", "'optimizer'='lbfgs'", "sgd, adam, rmsprop, adadelta")


def test_unknown_hyperparameter_key(job):
    set_hyperparameters(job, learning_rat="0.1")
    _fails_with(job, "learning_rat")


def test_missing_required_hyperparameter(job):
    values = json.loads(job.hyperparameters_file.read_text())
    del values["num_classes"]
    job.hyperparameters_file.write_text(json.dumps(values))
    _fails_with(job, "num_classes")


def test_missing_validation_channel(job):
    config = json.loads(job.input_data_config_file.read_text())
    del config["validation"], config["validation_annotation"]
    job.input_data_config_file.write_text(json.dumps(config))
    _fails_with(job, "validation")


def test_image_without_annotation(job):
    _first_annotation(job).unlink()
    _fails_with(job, "train/images/train_00000.jpg", "annotation")


def test_box_outside_the_image(job):
    path = _first_annotation(job)
    document = json.loads(path.read_text())
    document["annotations"][0]["left"] = document["image_size"][0]["width"] - 2
    path.write_text(json.dumps(document))
    _fails_with(job, path.name, "outside")


def test_class_id_not_below_num_classes(job):
    path = _first_annotation(job, "validation")
    document = json.loads(path.read_text())
    document["annotations"][0]["class_id"] = 3
    path.write_text(json.dumps(document))
    _fails_with(job, path.name, "num_classes is 3")


def test_image_that_does_not_decode(job):
    image = job.data_dir / "train" / "images" / "train_00003.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 3])  # the header parses, the pixels do not
    _fails_with(job, "train_00003.jpg", "decode")


def test_image_that_is_not_three_channel(job):
    image = job.data_dir / "train" / "images" / "train_00002.jpg"
    Image.open(image).convert("L").save(image, format="JPEG")
    _fails_with(job, "train_00002.jpg", "only 3-channel RGB")


def test_pretrained_weights_absent_says_how_to_provide_them(job, tmp_path):
    set_hyperparameters(job, use_pretrained_model="1")
    result = run_train(job, SAGEDET_WEIGHTS_DIR=str(tmp_path / "empty-cache"))
    assert result.returncode == 1
    reason = failure_reason(job)
    assert "mobilenet_v3_large-8738ca79.pth" in reason
    assert "sagedet fetch-weights" in reason and "use_pretrained_model=0" in reason


@pytest.mark.parametrize("device, fragment", [("tpu", "expected auto, cpu, cuda or cuda:N"),
                                              ("cuda:7", "CUDA is not available on this machine")])
def test_a_device_that_is_not_there_is_named(job, device, fragment):
    if device.startswith("cuda"):
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    result = run_train(job, timeout=300, SAGEDET_DEVICE=device)
    assert result.returncode == 1, result.stdout + result.stderr
    reason = failure_reason(job)
    assert f"SAGEDET_DEVICE='{device}'" in reason and fragment in reason and "Traceback" not in reason


def test_data_workers_that_are_not_a_count_are_named(job):
    result = run_train(job, timeout=300, SAGEDET_DATA_WORKERS="-2")
    assert result.returncode == 1, result.stdout + result.stderr
    reason = failure_reason(job)
    assert "SAGEDET_DATA_WORKERS='-2'" in reason and "expected an integer >= 0" in reason
    assert "Traceback" not in reason


def test_one_training_image_is_too_few_for_batch_normalization(tmp_path):
    from conftest import make_job

    paths = make_job(tmp_path / "opt_ml", train=1, validation=2)  # the tiny jobs train mobilenet-v3
    _fails_with(paths, "holds 1 image(s), too few for base_network=mobilenet-v3", "at least 2 images a step")


def test_image_shape_too_small_for_the_network(job):
    set_hyperparameters(job, base_network="vgg-16", image_shape="128")
    _fails_with(job, "'image_shape'=128", "vgg-16", ">= 268")


def test_incremental_model_of_another_network_or_class_count(job, tmp_path):
    from sagedet.artifacts import save_model

    model_channel = job.channel_dir("model")
    save_model(model_channel, {"w": __import__("torch").zeros(1)},
               {"base_network": "resnet-50", "num_classes": 5})
    config = json.loads(job.input_data_config_file.read_text())
    config["model"] = {"ContentType": "application/x-sagemaker-model", "TrainingInputMode": "File"}
    job.input_data_config_file.write_text(json.dumps(config))
    _fails_with(job, "base_network is 'resnet-50' in the model but 'mobilenet-v3'",
                "num_classes is 5 in the model but 3")


def test_incremental_archive_with_path_traversal_is_refused(job, tmp_path):
    import tarfile

    archive = job.channel_dir("model") / "model.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"x"
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    config = json.loads(job.input_data_config_file.read_text())
    config["model"] = {"ContentType": "application/x-sagemaker-model", "TrainingInputMode": "File"}
    job.input_data_config_file.write_text(json.dumps(config))
    _fails_with(job, "../../escaped.txt")
    assert not (job.root / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()


def test_a_validation_channel_without_objects_is_named(job):
    for annotation in job.channel_dir("validation_annotation").glob("*.json"):
        document = json.loads(annotation.read_text())
        annotation.write_text(json.dumps({**document, "annotations": []}))
    result = run_train(job)
    assert result.returncode == 1, result.stderr[-2000:]
    assert failure_reason(job).startswith("the validation data (8 images) holds no annotated object")
