"""Errors that reach the user as a plain reason (failure file, HTTP body, CLI message).

Every user-facing failure raises a subclass of :class:`SagedetError` whose message names the file,
record, key or value at fault and what is allowed. The training entrypoint writes ``str(error)`` to
``/opt/ml/output/failure``; anything else escaping is a bug and is reported with its traceback.
"""


class SagedetError(Exception):
    """A failure caused by the user's input or environment, explained in its message."""


class ConfigError(SagedetError):
    """A hyperparameter, configuration file or environment variable is missing or invalid."""


class DataError(SagedetError):
    """Training or validation data is missing, malformed or inconsistent."""


class ModelError(SagedetError):
    """A model artifact, checkpoint or pretrained-weights file is missing or does not fit."""
