"""Reading the JSON files SageMaker writes under /opt/ml/input/config."""

from __future__ import annotations

import json
from pathlib import Path

from sagedet.errors import ConfigError


class _DuplicateKey(Exception):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    value: dict = {}
    for key, item in pairs:
        if key in value:
            raise _DuplicateKey(repr(key))
        value[key] = item
    return value


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; ``what`` names the file in errors (e.g. "resource config")."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} file {path}: {error}") from None
    except _DuplicateKey as duplicate:
        raise ConfigError(f"{what} file {path} gives {duplicate} more than once: which value is meant is not clear; "
                          "give each key once") from None
    except ValueError as error:
        raise ConfigError(f"{what} file {path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} file {path} must hold a JSON object, not {type(value).__name__}")
    return value
