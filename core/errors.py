"""Errors that are the user's to fix. Their message is the one-line failure reason SageMaker shows.

Anything else raised during a job is our bug: it is reported as such, with the traceback in the log only.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the job's input (hyperparameters, channels, data, configuration).

    ``str(err)`` is one line that names the culprit; it becomes the first line of /opt/ml/output/failure.
    """

    exit_code = 1

    def __init__(self, message: str):
        # One line: SageMaker shows only the first 1024 characters of the failure file.
        super().__init__(" ".join(str(message).split()))


class HyperparameterError(UserError):
    """A hyperparameter is unknown, missing, of the wrong type or out of range."""


class ConfigurationError(UserError):
    """The /opt/ml/input/config files or the environment are inconsistent."""


class OutputError(UserError):
    """An output location (/opt/ml/model, /opt/ml/output) cannot be written: the platform's or the user's setup."""


class DataError(UserError):
    """A channel's data cannot be used. Names the file, line and column when they are known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | str | None = None,
        row: int | None = None,
    ):
        # ``reason`` is the message without the location, so callers can re-raise it with a better location.
        # ``row`` is for formats without lines (parquet): the 1-based record number in the file.
        self.file, self.line, self.column, self.row = file, line, column, row
        self.reason = " ".join(str(message).split())
        where = []
        if file is not None:
            where.append(f"file {file}")
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class SchemaError(DataError):
    """schema.json is malformed or does not match the data."""


class ClusterError(UserError):
    """Another host of a multi-host job failed, hung or never appeared; the job cannot go on on this host.

    Not the user's input, but not our bug either: exit code 1, with the reason first in the failure file.
    """
