import json

import pytest

from sagedet.errors import ConfigError
from sagedet.sagemaker.hyperparameters import (
    BASE_NETWORKS,
    HYPERPARAMETER_TABLE,
    OPTIMIZERS,
    TrainingConfig,
    load_hyperparameters,
    parse_hyperparameters,
)

REQUIRED = {"num_classes": "3", "num_training_samples": "1000"}


def parse(**values):
    return parse_hyperparameters({**REQUIRED, **values})


def test_defaults():
    config = parse_hyperparameters(REQUIRED)
    assert config.to_dict() == {
        "num_classes": 3,
        "num_training_samples": 1000,
        "base_network": "vgg-16",
        "use_pretrained_model": True,
        "epochs": 30,
        "learning_rate": 0.001,
        "lr_scheduler_step": [],
        "lr_scheduler_factor": 0.1,
        "optimizer": "sgd",
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "mini_batch_size": 32,
        "image_shape": 300,
        "label_width": 350,
        "nms_threshold": 0.45,
        "overlap_threshold": 0.5,
        "early_stopping": False,
        "early_stopping_min_epochs": 10,
        "early_stopping_patience": 5,
        "early_stopping_tolerance": 0.0,
        "freeze_layer_pattern": None,
        "kv_store": None,
    }
    assert config.lr_scheduler_step == ()


def test_table_matches_config_fields_and_defaults():
    assert list(HYPERPARAMETER_TABLE) == list(TrainingConfig.__dataclass_fields__)
    defaults = parse_hyperparameters(REQUIRED).to_dict()
    for name, row in HYPERPARAMETER_TABLE.items():
        assert row.allowed
        if row.required:
            assert name in REQUIRED and row.default is None
        else:
            expected = list(row.default) if isinstance(row.default, tuple) else row.default
            assert defaults[name] == expected


# (name, value as the user's Python code holds it, the typed value expected)
TYPED_VALUES = [
    ("num_classes", 20, 20),
    ("num_training_samples", 16551, 16551),
    ("base_network", "resnet-50", "resnet-50"),
    ("base_network", "mobilenet-v3", "mobilenet-v3"),
    ("use_pretrained_model", 0, False),
    ("use_pretrained_model", 1, True),
    ("use_pretrained_model", False, False),
    ("epochs", 5, 5),
    ("learning_rate", 0.004, 0.004),
    ("learning_rate", 1, 1.0),
    ("lr_scheduler_step", [10, 20], (10, 20)),
    ("lr_scheduler_step", (3, 7), (3, 7)),
    ("lr_scheduler_step", "10, 20", (10, 20)),
    ("lr_scheduler_step", 15, (15,)),
    ("lr_scheduler_factor", 0.5, 0.5),
    ("optimizer", "rmsprop", "rmsprop"),
    ("momentum", 0.8, 0.8),
    ("weight_decay", 0.001, 0.001),
    ("mini_batch_size", 16, 16),
    ("image_shape", 512, 512),
    ("label_width", 600, 600),
    ("nms_threshold", 0.3, 0.3),
    ("overlap_threshold", 0.7, 0.7),
    ("early_stopping", True, True),
    ("early_stopping", False, False),
    ("early_stopping_min_epochs", 3, 3),
    ("early_stopping_patience", 2, 2),
    ("early_stopping_tolerance", 0.01, 0.01),
    ("freeze_layer_pattern", "^(conv1_|conv2_).*", "^(conv1_|conv2_).*"),
    ("freeze_layer_pattern", r"^features\.\d+\.", r"^features\.\d+\."),
    ("kv_store", "dist_sync", "dist_sync"),
    ("kv_store", "dist_async", "dist_async"),
]


@pytest.mark.parametrize("form", ["raw", "str", "json"])
@pytest.mark.parametrize(("name", "value", "expected"), TYPED_VALUES)
def test_value_forms(name, value, expected, form):
    """The generic Estimator sends str(value), framework estimators json.dumps(value)."""
    sent = {"raw": value, "str": str(value), "json": json.dumps(value)}[form]
    parsed = getattr(parse(**{name: sent}), name)
    assert parsed == expected
    assert type(parsed) is type(expected)


def test_every_hyperparameter_has_a_value_form_test():
    assert {name for name, _, _ in TYPED_VALUES} == set(HYPERPARAMETER_TABLE)


@pytest.mark.parametrize("text", ["false", "False", "FALSE", "0", " false "])
def test_false_spellings(text):
    config = parse(use_pretrained_model=text, early_stopping=text)
    assert config.use_pretrained_model is False
    assert config.early_stopping is False


@pytest.mark.parametrize("text", ["true", "True", "1"])
def test_true_spellings(text):
    config = parse(use_pretrained_model=text, early_stopping=text)
    assert config.use_pretrained_model is True
    assert config.early_stopping is True


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("num_classes", "3", 3), ("mini_batch_size", "16", 16), ("epochs", "10", 10), ("early_stopping_patience", "3", 3),
    ("use_pretrained_model", "1", True), ("early_stopping", "False", False), ("learning_rate", "0.01", 0.01),
    ("momentum", ".5", 0.5)])
def test_numbers_and_flags_held_as_strings_by_a_framework_estimator(name, text, expected):
    """A framework estimator sends json.dumps(value): a number the user holds as a string arrives quoted."""
    parsed = getattr(parse(**{name: json.dumps(text)}), name)
    assert parsed == expected and type(parsed) is type(expected)


def test_integral_float_text_is_an_integer():
    config = parse(mini_batch_size="32.0", epochs="1e1")
    assert config.mini_batch_size == 32 and type(config.mini_batch_size) is int
    assert config.epochs == 10


def test_case_and_spaces_are_normalised():
    config = parse(base_network=" ResNet-50 ", optimizer="Adam", kv_store="DIST_SYNC")
    assert (config.base_network, config.optimizer, config.kv_store) == (
        "resnet-50",
        "adam",
        "dist_sync",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("[]", ()),
        ("10", (10,)),
        ("10,20,30", (10, 20, 30)),
        ("[10, 20]", (10, 20)),
        ('"10, 20"', (10, 20)),
        ("10.0, 20", (10, 20)),
    ],
)
def test_lr_scheduler_step_forms(value, expected):
    assert parse(lr_scheduler_step=value).lr_scheduler_step == expected


def test_zero_momentum_and_weight_decay_are_allowed():
    """The tuning page recommends ranges 0.0-0.999 for both."""
    config = parse(momentum="0", weight_decay="0.0")
    assert (config.momentum, config.weight_decay) == (0.0, 0.0)
    assert parse(momentum="1").momentum == 1.0


@pytest.mark.parametrize("value", ["", "None", "null"])
def test_empty_optional_strings_are_none(value):
    config = parse(freeze_layer_pattern=value, kv_store=value)
    assert config.freeze_layer_pattern is None
    assert config.kv_store is None


def test_image_shape_bounds():
    assert parse(image_shape="64").image_shape == 64
    assert parse(image_shape="2048").image_shape == 2048


INVALID = [
    ("num_classes", "0", "an integer >= 1"),
    ("num_classes", "abc", "an integer >= 1"),
    ("num_training_samples", "-5", "an integer >= 1"),
    ("base_network", "resnet-101", "one of " + ", ".join(BASE_NETWORKS)),
    ("base_network", "5", "one of vgg-16"),
    ("use_pretrained_model", "2", "1 or 0"),
    ("use_pretrained_model", "yes", "1 or 0"),
    ("epochs", "0", "an integer >= 1"),
    ("epochs", "2.5", "an integer >= 1"),
    ("epochs", "True", "an integer >= 1"),
    ("epochs", True, "an integer >= 1"),
    ("learning_rate", "0", "a number in (0, 1]"),
    ("learning_rate", "1.5", "a number in (0, 1]"),
    ("learning_rate", "fast", "a number in (0, 1]"),
    ("learning_rate", "nan", "a number in (0, 1]"),
    ("learning_rate", "Infinity", "a number in (0, 1]"),
    ("lr_scheduler_step", "20, 10", "strictly increasing integers >= 1"),
    ("lr_scheduler_step", "10, 10", "strictly increasing integers >= 1"),
    ("lr_scheduler_step", "0, 10", "strictly increasing integers >= 1"),
    ("lr_scheduler_step", "10.5", "strictly increasing integers >= 1"),
    ("lr_scheduler_step", "ten", "strictly increasing integers >= 1"),
    ("lr_scheduler_factor", "1", "a number in (0, 1)"),
    ("lr_scheduler_factor", "0", "a number in (0, 1)"),
    ("optimizer", "adamw", "one of " + ", ".join(OPTIMIZERS)),
    ("momentum", "1.01", "a number in [0, 1]"),
    ("momentum", "-0.1", "a number in [0, 1]"),
    ("weight_decay", "1", "a number in [0, 1)"),
    ("mini_batch_size", "abc", "an integer >= 1"),
    ("mini_batch_size", "32.5", "an integer >= 1"),
    ("image_shape", "63", "an integer from 64 to 2048"),
    ("image_shape", "4096", "an integer from 64 to 2048"),
    ("label_width", "0", "an integer >= 1"),
    ("nms_threshold", "0", "a number in (0, 1]"),
    ("overlap_threshold", "1.1", "a number in (0, 1]"),
    ("early_stopping", "maybe", "True or False"),
    ("early_stopping_min_epochs", "0", "an integer >= 1"),
    ("early_stopping_patience", "x", "an integer >= 1"),
    ("early_stopping_tolerance", "1.5", "a number in [0, 1]"),
    ("freeze_layer_pattern", "(conv1", "a Python regular expression"),
    ("kv_store", "device", "one of dist_sync, dist_async"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), INVALID)
def test_invalid_value_names_key_value_and_allowed(name, value, allowed):
    with pytest.raises(ConfigError) as caught:
        parse(**{name: value})
    message = str(caught.value)
    assert f"hyperparameter {name!r}={value!r}: expected " in message
    assert allowed in message
    assert message.count("\n") == 0


def test_message_shape_for_mini_batch_size():
    with pytest.raises(ConfigError) as caught:
        parse(mini_batch_size="abc")
    assert str(caught.value) == "hyperparameter 'mini_batch_size'='abc': expected an integer >= 1"


def test_bad_regex_reports_the_regex_error():
    with pytest.raises(ConfigError, match="missing \\), unterminated subpattern"):
        parse(freeze_layer_pattern="(conv1")


def test_unknown_key_is_named_with_the_known_keys():
    with pytest.raises(ConfigError) as caught:
        parse(batch_size="32")
    message = str(caught.value)
    assert message.startswith("unknown hyperparameter 'batch_size'\nknown hyperparameters: ")
    for name in HYPERPARAMETER_TABLE:
        assert name in message


def test_several_unknown_keys_leave_room_for_every_other_problem():
    """The known keys are listed once, last, so the first 1024 characters (SageMaker's FailureReason) hold
    every problem."""
    with pytest.raises(ConfigError) as caught:
        parse(batch_size="32", learning_rat="0.1", epoch="3", mini_batch_size="0")
    lines = str(caught.value).splitlines()
    assert lines[:3] == ["unknown hyperparameter 'batch_size'", "unknown hyperparameter 'learning_rat'",
                         "unknown hyperparameter 'epoch'"]
    assert "hyperparameter 'mini_batch_size'='0': expected an integer >= 1" in str(caught.value)[:1024]
    assert lines[-1].startswith("known hyperparameters: ") and len(lines) == 5


def test_a_key_given_twice_is_refused(tmp_path):
    from sagedet.sagemaker.hyperparameters import load_hyperparameters

    path = tmp_path / "hyperparameters.json"
    path.write_text('{"num_classes": "3", "num_training_samples": "8", "epochs": "5", "epochs": "50"}')
    with pytest.raises(ConfigError, match=r"hyperparameters file .* gives 'epochs' more than once"):
        load_hyperparameters(path)


@pytest.mark.parametrize("name", ["num_classes", "num_training_samples"])
def test_missing_required(name):
    raw = dict(REQUIRED)
    del raw[name]
    with pytest.raises(ConfigError) as caught:
        parse_hyperparameters(raw)
    assert str(caught.value) == f"hyperparameter '{name}' is required: expected an integer >= 1"


def test_sagemaker_keys_are_ignored():
    config = parse(
        _tuning_objective_metric="validation:mAP",
        sagemaker_region='"us-east-1"',
        sagemaker_job_name="job",
        _anything="x",
    )
    assert config == parse_hyperparameters(REQUIRED)


def test_all_errors_are_reported_together_one_per_line():
    with pytest.raises(ConfigError) as caught:
        parse_hyperparameters(
            {"mini_batch_size": "abc", "optimizer": "adamw", "bogus": "1", "momentum": "2"}
        )
    lines = str(caught.value).splitlines()
    assert len(lines) == 7  # six problems, then the known keys
    assert lines[-1].startswith("known hyperparameters: ")
    assert any(line.startswith("unknown hyperparameter 'bogus'") for line in lines)
    assert "hyperparameter 'num_classes' is required: expected an integer >= 1" in lines
    assert "hyperparameter 'mini_batch_size'='abc': expected an integer >= 1" in lines
    assert any(line.startswith("hyperparameter 'optimizer'='adamw'") for line in lines)
    assert any(line.startswith("hyperparameter 'momentum'='2'") for line in lines)


def test_to_dict_is_json_and_round_trips():
    config = parse(lr_scheduler_step="10, 20", base_network="resnet-50", freeze_layer_pattern="^a")
    text = json.dumps(config.to_dict())
    assert json.loads(text)["lr_scheduler_step"] == [10, 20]
    assert parse_hyperparameters(json.loads(text)) == config
    assert parse_hyperparameters({k: str(v) for k, v in config.to_dict().items()}) == config


def test_config_is_frozen():
    config = parse_hyperparameters(REQUIRED)
    with pytest.raises(AttributeError):
        config.epochs = 3


def test_load_from_file(tmp_path):
    path = tmp_path / "hyperparameters.json"
    path.write_text(json.dumps({**REQUIRED, "epochs": "7", "base_network": '"resnet-50"'}))
    config = load_hyperparameters(path)
    assert (config.num_classes, config.epochs, config.base_network) == (3, 7, "resnet-50")


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope" / "hyperparameters.json"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_hyperparameters(path)
    assert str(path) in str(caught.value)


def test_load_bad_json(tmp_path):
    path = tmp_path / "hyperparameters.json"
    path.write_text("{num_classes: 3")
    with pytest.raises(ConfigError, match="not valid JSON") as caught:
        load_hyperparameters(path)
    assert str(path) in str(caught.value)


def test_load_non_object(tmp_path):
    path = tmp_path / "hyperparameters.json"
    path.write_text('["num_classes", "3"]')
    with pytest.raises(ConfigError, match="must hold a JSON object, not list") as caught:
        load_hyperparameters(path)
    assert str(path) in str(caught.value)
