import json

import pytest

from sagedet.errors import ConfigError
from sagedet.sagemaker.channels import Channel, load_channels
from sagedet.sagemaker.paths import SageMakerPaths

IMAGE_CHANNELS = ("train", "validation", "train_annotation", "validation_annotation")


@pytest.fixture
def paths(tmp_path):
    return SageMakerPaths(tmp_path)


def make(paths, config=None, folders=()):
    """Write inputdataconfig.json (unless None) and create the channel folders."""
    for name in folders:
        paths.channel_dir(name).mkdir(parents=True)
    if config is not None:
        paths.config_dir.mkdir(parents=True, exist_ok=True)
        paths.input_data_config_file.write_text(json.dumps(config))


def entry(content_type=None, mode="File", **extra):
    result = {"TrainingInputMode": mode, "S3DistributionType": "FullyReplicated",
              "RecordWrapperType": "None", **extra}
    if content_type is not None:
        result["ContentType"] = content_type
    return result


def image_config(image_type="image/jpeg", annotation_type="application/json"):
    return {
        "train": entry(image_type),
        "validation": entry(image_type),
        "train_annotation": entry(annotation_type),
        "validation_annotation": entry(annotation_type),
    }


def test_image_json_channels(paths):
    make(paths, image_config(), IMAGE_CHANNELS)
    channels = load_channels(paths)
    assert channels.format == "image+json"
    assert channels.train == Channel(
        name="train",
        content_type="image/jpeg",
        input_mode="File",
        distribution="FullyReplicated",
        record_wrapper="None",
        path=paths.root / "input" / "data" / "train",
    )
    assert channels.validation.path == paths.channel_dir("validation")
    assert channels.train_annotation.content_type == "application/json"
    assert channels.validation_annotation.name == "validation_annotation"
    assert channels.model is None


@pytest.mark.parametrize("image_type", ["image/jpeg", "image/png", "application/x-image"])
@pytest.mark.parametrize("annotation_type", ["application/json", "same"])
def test_image_types_and_annotation_types(paths, image_type, annotation_type):
    annotation_type = image_type if annotation_type == "same" else annotation_type
    make(paths, image_config(image_type, annotation_type), IMAGE_CHANNELS)
    channels = load_channels(paths)
    assert channels.format == "image+json"
    assert channels.train.content_type == image_type
    assert channels.validation_annotation.content_type == annotation_type


def test_content_type_parameters_and_case_are_normalised(paths):
    make(paths, image_config("Image/JPEG; charset=binary", "APPLICATION/JSON;x=1"), IMAGE_CHANNELS)
    channels = load_channels(paths)
    assert channels.train.content_type == "image/jpeg"
    assert channels.train_annotation.content_type == "application/json"


def test_fastfile_mode_and_sharding(paths):
    config = image_config()
    config["train"] = entry("image/png", mode="FastFile", S3DistributionType="ShardedByS3Key")
    make(paths, config, IMAGE_CHANNELS)
    train = load_channels(paths).train
    assert (train.input_mode, train.distribution) == ("FastFile", "ShardedByS3Key")


def test_missing_content_type_is_inferred_from_annotation_channels(paths):
    make(paths, {name: entry() for name in IMAGE_CHANNELS}, IMAGE_CHANNELS)
    channels = load_channels(paths)
    assert channels.format == "image+json"
    assert channels.train_annotation.content_type == "application/json"


def test_recordio_file_mode(paths):
    config = {name: entry("application/x-recordio") for name in ("train", "validation")}
    make(paths, config, ("train", "validation"))
    channels = load_channels(paths)
    assert channels.format == "recordio"
    assert channels.train_annotation is None and channels.validation_annotation is None


def test_recordio_pipe_mode_needs_no_folder(paths):
    config = {
        "train": entry("application/x-recordio", mode="Pipe"),
        "validation": entry("application/x-recordio", mode="Pipe"),
    }
    make(paths, config)
    channels = load_channels(paths)
    assert channels.format == "recordio"
    assert channels.train.input_mode == "Pipe"
    assert channels.train.path == paths.channel_dir("train")


@pytest.mark.parametrize("content_type", ["application/x-recordio", "image/jpeg", None])
def test_augmented_manifest(paths, content_type):
    config = {
        name: entry(content_type, mode="Pipe", RecordWrapperType="RecordIO",
                    S3DataType="AugmentedManifestFile", AttributeNames=["source-ref", "bb"])
        for name in ("train", "validation")
    }
    make(paths, config)
    channels = load_channels(paths)
    assert channels.format == "augmented-manifest"
    assert channels.train.record_wrapper == "RecordIO"
    assert channels.train_annotation is None


def test_model_channel(paths):
    config = {**image_config(), "model": entry("application/x-sagemaker-model")}
    make(paths, config, (*IMAGE_CHANNELS, "model"))
    model = load_channels(paths).model
    assert model.content_type == "application/x-sagemaker-model"
    assert model.path == paths.channel_dir("model")


def test_model_channel_wrong_content_type(paths):
    config = {**image_config(), "model": entry("application/x-tar")}
    make(paths, config, (*IMAGE_CHANNELS, "model"))
    with pytest.raises(ConfigError, match="'model' has ContentType 'application/x-tar'"):
        load_channels(paths)


def test_unknown_channels_are_ignored(paths):
    config = {**image_config(), "extra": {"ContentType": "text/csv", "TrainingInputMode": "Bogus"}}
    make(paths, config, IMAGE_CHANNELS)
    channels = load_channels(paths)
    assert channels.format == "image+json"
    assert "extra" not in {c.name for c in vars(channels).values() if c is not None}


def test_without_inputdataconfig_image_folders(paths):
    make(paths, None, (*IMAGE_CHANNELS, "model", "notes"))
    channels = load_channels(paths)
    assert channels.format == "image+json"
    assert channels.train.input_mode == "File"
    assert channels.train.distribution == "FullyReplicated"
    assert channels.train.record_wrapper == "None"
    assert channels.model.content_type == "application/x-sagemaker-model"


def test_without_inputdataconfig_recordio_folders(paths):
    make(paths, None, ("train", "validation"))
    (paths.channel_dir("train") / "train.rec").write_bytes(b"")
    (paths.channel_dir("validation") / "val.rec").write_bytes(b"")
    assert load_channels(paths).format == "recordio"


def test_without_inputdataconfig_unknown_content(paths):
    make(paths, None, ("train", "validation"))
    with pytest.raises(ConfigError, match="'train' has no ContentType and it cannot be infer"):
        load_channels(paths)


def test_without_anything_no_train(paths):
    with pytest.raises(ConfigError, match="no 'train' channel \\(found: none\\)"):
        load_channels(paths)


def test_no_train_channel_lists_what_was_found(paths):
    make(paths, {"training": entry("image/jpeg"), "validation": entry("image/jpeg")})
    with pytest.raises(ConfigError, match="no 'train' channel \\(found: training, validation\\)"):
        load_channels(paths)


def test_no_validation_channel(paths):
    make(paths, {"train": entry("image/jpeg")}, ("train",))
    with pytest.raises(ConfigError, match="requires a validation channel"):
        load_channels(paths)


def test_image_channels_without_annotations(paths):
    config = {"train": entry("image/jpeg"), "validation": entry("image/jpeg"),
              "train_annotation": entry("application/json")}
    make(paths, config, ("train", "validation", "train_annotation"))
    with pytest.raises(ConfigError, match="missing: validation_annotation$"):
        load_channels(paths)


def test_unsupported_content_type(paths):
    config = {"train": entry("text/csv"), "validation": entry("text/csv")}
    make(paths, config, ("train", "validation"))
    with pytest.raises(ConfigError) as caught:
        load_channels(paths)
    message = str(caught.value)
    assert "'train' has unsupported ContentType 'text/csv'" in message
    for supported in ("image/jpeg", "image/png", "application/x-image", "application/x-recordio"):
        assert supported in message


def test_unsupported_annotation_content_type(paths):
    make(paths, image_config(annotation_type="text/plain"), IMAGE_CHANNELS)
    with pytest.raises(ConfigError, match="'train_annotation' has unsupported ContentType"):
        load_channels(paths)


def test_train_and_validation_formats_must_agree(paths):
    config = {"train": entry("application/x-recordio"), "validation": entry("image/jpeg")}
    make(paths, config, ("train", "validation"))
    with pytest.raises(ConfigError, match=r"'train' \(recordio\) and 'validation' \(image\+json\)"):
        load_channels(paths)


def test_pipe_mode_for_images_is_rejected(paths):
    config = image_config()
    config["train"] = entry("image/jpeg", mode="Pipe")
    make(paths, config, IMAGE_CHANNELS)
    with pytest.raises(ConfigError) as caught:
        load_channels(paths)
    message = str(caught.value)
    assert "channel 'train': Pipe mode is not supported" in message
    assert "RecordIO" in message and "augmented manifest" in message


def test_missing_folder_in_file_mode(paths):
    make(paths, image_config(), ("train", "validation", "train_annotation"))
    with pytest.raises(ConfigError) as caught:
        load_channels(paths)
    assert str(paths.channel_dir("validation_annotation")) in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_bad_input_mode(paths):
    config = image_config()
    config["train"]["TrainingInputMode"] = "Stream"
    make(paths, config, IMAGE_CHANNELS)
    with pytest.raises(ConfigError, match="TrainingInputMode 'Stream'; expected one of File, Fast"):
        load_channels(paths)


def test_bad_inputdataconfig_json(paths):
    paths.config_dir.mkdir(parents=True)
    paths.input_data_config_file.write_text("{")
    with pytest.raises(ConfigError, match="input data config file .* is not valid JSON") as caught:
        load_channels(paths)
    assert str(paths.input_data_config_file) in str(caught.value)


def test_without_inputdataconfig_manifest_folders(paths):
    make(paths, None, ("train", "validation"))
    (paths.channel_dir("train") / "train.manifest").write_text("{}\n")
    (paths.channel_dir("validation") / "validation.manifest").write_text("{}\n")
    assert load_channels(paths).format == "augmented-manifest"


def test_a_file_mode_recordio_channel_holding_a_manifest_is_a_manifest(paths):
    config = {name: entry("application/x-recordio") for name in ("train", "validation")}
    make(paths, config, ("train", "validation"))
    (paths.channel_dir("train") / "data.manifest").write_text("{}\n")
    (paths.channel_dir("validation") / "data.manifest").write_text("{}\n")
    assert load_channels(paths).format == "augmented-manifest"
    (paths.channel_dir("train") / "data.rec").write_bytes(b"")
    (paths.channel_dir("validation") / "data.rec").write_bytes(b"")
    assert load_channels(paths).format == "recordio"  # .rec files win
