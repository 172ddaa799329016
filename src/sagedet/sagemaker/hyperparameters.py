"""The built-in Object Detection algorithm's hyperparameters as one typed, validated config.

SageMaker writes ``/opt/ml/input/config/hyperparameters.json`` as a JSON object whose values are
strings. The SDK's generic ``Estimator`` sends ``str(value)`` (``"True"``, ``"[10, 20]"``),
framework estimators send ``json.dumps(value)`` (``"\\"resnet-50\\""``), and hand-written files
may hold real JSON numbers, booleans and lists: every form is accepted. Keys SageMaker or the SDK
add (``_tuning_objective_metric``, ``sagemaker_*``, anything starting with ``_``) are ignored; any
other unknown key is an error. Every invalid value is reported, one per line, in one ConfigError.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from sagedet.errors import ConfigError
from sagedet.sagemaker.config_file import read_json_object

# mobilenet-v3 (SSDlite) is our addition beyond the built-in.
BASE_NETWORKS = ("vgg-16", "resnet-50", "mobilenet-v3")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adadelta")
KV_STORES = ("dist_sync", "dist_async")


@dataclass(frozen=True)
class TrainingConfig:
    num_classes: int
    num_training_samples: int
    base_network: str
    use_pretrained_model: bool
    epochs: int
    learning_rate: float
    lr_scheduler_step: tuple[int, ...]
    lr_scheduler_factor: float
    optimizer: str
    momentum: float
    weight_decay: float
    mini_batch_size: int
    image_shape: int
    label_width: int
    nms_threshold: float
    overlap_threshold: float
    early_stopping: bool
    early_stopping_min_epochs: int
    early_stopping_patience: int
    early_stopping_tolerance: float
    freeze_layer_pattern: str | None
    kv_store: str | None

    def to_dict(self) -> dict:
        """JSON-serialisable typed values; ``parse_hyperparameters`` reads it back unchanged."""
        values = asdict(self)
        values["lr_scheduler_step"] = list(self.lr_scheduler_step)
        return values


class Hyperparameter(NamedTuple):
    """One row of the table: typed default (None when required or unset) and allowed values."""

    default: Any
    allowed: str
    required: bool = False


class _Invalid(ValueError):
    """A value does not parse; its message, if any, adds detail to the allowed values."""


def _decode(value: Any) -> Any:
    """A string as the JSON it encodes (``"32"`` → 32, ``"[1, 2]"`` → list), else stripped."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _scalar(value: Any) -> Any:
    """A number or flag as sent either way: ``str(value)`` or ``json.dumps(value)``, including a JSON-quoted
    string of it (``json.dumps("3")`` is ``"\\"3\\""``, what a framework estimator sends for the string "3")."""
    value = _decode(value)
    return _decode(value) if isinstance(value, str) else value


def _text(value: Any) -> str:
    """A string value, unwrapping one level of JSON string quoting (``"\\"x\\""`` → ``x``)."""
    decoded = _decode(value)
    if isinstance(decoded, str):
        return decoded.strip()
    if isinstance(value, str):  # e.g. "1" decoded to a number: keep the text as sent
        return value.strip()
    raise _Invalid()


def _optional_text(value: Any) -> str | None:
    """Like :func:`_text`, but ``""``, ``"None"`` (the SDK's ``str(None)``) and null mean unset."""
    if _decode(value) is None:
        return None
    text = _text(value)
    return text if text not in ("", "None") else None


def _to_int(value: Any) -> int:
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid()
    if isinstance(value, float):
        if not value.is_integer():  # also rejects nan and inf
            raise _Invalid()
        value = int(value)
    return value


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = _to_int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise _Invalid()
        return number

    return parse


def _number(low: float, high: float, low_open: bool, high_open: bool) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        value = _scalar(value)
        if isinstance(value, str):
            try:
                value = float(value)  # forms JSON lacks, e.g. ".5"
            except ValueError:
                raise _Invalid() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid()
        number = float(value)
        if not math.isfinite(number):
            raise _Invalid()
        if number < low or (low_open and number == low):
            raise _Invalid()
        if number > high or (high_open and number == high):
            raise _Invalid()
        return number

    return parse


def _boolean(value: Any) -> bool:
    """True/False in any case, and 1/0, as the table's 0/1 and the SDK's ``str(True)`` send them."""
    value = _scalar(value)
    if isinstance(value, str):
        value = {"true": True, "false": False}.get(value.lower(), value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Invalid()


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in choices:
            raise _Invalid()
        return text

    return parse


def _optional_choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        text = _optional_text(value)
        return None if text is None else _choice(choices)(text)

    return parse


def _steps(value: Any) -> tuple[int, ...]:
    """``""`` → (); ``"10, 20"``, ``"[10, 20]"``, ``"(10, 20)"``, ``10`` or a JSON list."""
    decoded = _decode(value)
    if isinstance(decoded, str):
        parts = [part for part in decoded.strip("[]() ").split(",") if part.strip()]
    elif isinstance(decoded, (list, tuple)):
        parts = decoded
    else:
        parts = [decoded]
    steps = tuple(_to_int(part) for part in parts)
    if any(step < 1 for step in steps) or any(a >= b for a, b in zip(steps, steps[1:])):
        raise _Invalid()
    return steps


def _regex(value: Any) -> str | None:
    text = _optional_text(value)
    if text is None:
        return None
    try:
        re.compile(text)
    except re.error as error:
        raise _Invalid(str(error)) from None
    return text


class _Spec(NamedTuple):
    row: Hyperparameter
    parse: Callable[[Any], Any]


def _spec(default: Any, allowed: str, parse: Callable[[Any], Any], required: bool = False) -> _Spec:
    return _Spec(Hyperparameter(default, allowed, required), parse)


_INT_1 = "an integer >= 1"

_SPECS: dict[str, _Spec] = {
    "num_classes": _spec(None, _INT_1, _integer(1), required=True),
    "num_training_samples": _spec(None, _INT_1, _integer(1), required=True),
    "base_network": _spec("vgg-16", f"one of {', '.join(BASE_NETWORKS)}", _choice(BASE_NETWORKS)),
    "use_pretrained_model": _spec(True, "1 or 0 (also True/False)", _boolean),
    "epochs": _spec(30, _INT_1, _integer(1)),
    "learning_rate": _spec(0.001, "a number in (0, 1]", _number(0, 1, True, False)),
    "lr_scheduler_step": _spec(
        (),
        "comma-separated epochs, strictly increasing integers >= 1, e.g. '10, 20' (or empty)",
        _steps,
    ),
    "lr_scheduler_factor": _spec(0.1, "a number in (0, 1)", _number(0, 1, True, True)),
    "optimizer": _spec("sgd", f"one of {', '.join(OPTIMIZERS)}", _choice(OPTIMIZERS)),
    # The table says momentum (0, 1] and weight_decay (0, 1), but the tuning page recommends
    # ranges 0.0-0.999 for both, so a tuning job may send 0: 0 is allowed for both.
    "momentum": _spec(0.9, "a number in [0, 1]", _number(0, 1, False, False)),
    "weight_decay": _spec(0.0005, "a number in [0, 1)", _number(0, 1, False, True)),
    "mini_batch_size": _spec(32, _INT_1, _integer(1)),
    # The built-in needs >= 300; smaller sizes serve tests and light models. The model builder
    # enforces each network's own minimum.
    "image_shape": _spec(300, "an integer from 64 to 2048", _integer(64, 2048)),
    "label_width": _spec(350, _INT_1, _integer(1)),
    "nms_threshold": _spec(0.45, "a number in (0, 1]", _number(0, 1, True, False)),
    "overlap_threshold": _spec(0.5, "a number in (0, 1]", _number(0, 1, True, False)),
    "early_stopping": _spec(False, "True or False (also true/false, 1/0)", _boolean),
    "early_stopping_min_epochs": _spec(10, _INT_1, _integer(1)),
    "early_stopping_patience": _spec(5, _INT_1, _integer(1)),
    "early_stopping_tolerance": _spec(0.0, "a number in [0, 1]", _number(0, 1, False, False)),
    "freeze_layer_pattern": _spec(
        None, "a Python regular expression over base-network layer names (or empty)", _regex
    ),
    "kv_store": _spec(
        None, f"one of {', '.join(KV_STORES)} (or empty)", _optional_choice(KV_STORES)
    ),
}

HYPERPARAMETER_TABLE: dict[str, Hyperparameter] = {name: spec.row for name, spec in _SPECS.items()}


def _ignored(key: str) -> bool:
    """Keys SageMaker and the SDK add: ``_tuning_objective_metric``, ``sagemaker_*``, ``_*``."""
    return key.startswith(("_", "sagemaker_"))


def parse_hyperparameters(raw: dict) -> TrainingConfig:
    """Validate the hyperparameters.json object; a JSON null means "not given"."""
    unknown = [key for key in raw if key not in _SPECS and not _ignored(key)]
    errors = [f"unknown hyperparameter {key!r}" for key in unknown]
    values: dict[str, Any] = {}
    for name, (row, parse) in _SPECS.items():
        value = raw.get(name)
        if value is None:
            if row.required:
                errors.append(f"hyperparameter {name!r} is required: expected {row.allowed}")
            values[name] = row.default
            continue
        try:
            values[name] = parse(value)
        except _Invalid as invalid:
            detail = f"; {invalid}" if str(invalid) else ""
            errors.append(f"hyperparameter {name!r}={value!r}: expected {row.allowed}{detail}")
    if unknown:  # once, last: the first 1024 characters (SageMaker's FailureReason) keep every other problem
        errors.append(f"known hyperparameters: {', '.join(_SPECS)}")
    if errors:
        raise ConfigError("\n".join(errors))
    return TrainingConfig(**values)


def load_hyperparameters(path: Path) -> TrainingConfig:
    """Read and validate a hyperparameters.json file."""
    raw = read_json_object(path, "hyperparameters")
    return parse_hyperparameters(raw)
