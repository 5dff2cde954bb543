"""The worker's exceptions: one base, one narrow class per kind of failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class FarmError(Exception):
    """Base of every error the worker raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a payload or a config file."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class PayloadError(FarmError):
    """The job's payload is invalid: the job ends `rejected`."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))

    @property
    def field(self) -> str:
        return self.errors[0].field if self.errors else ""


class ConfigError(FarmError):
    """The worker's config file is invalid; the message names the file and the key."""


class EnvironmentBuildError(FarmError):
    """A Tempest environment could not be locked, downloaded, built or verified."""


class TempestError(FarmError):
    """Tempest could not be set up or listed (a configuration or infrastructure problem)."""


class ReportError(FarmError):
    """The callback server could not be reached or refused a request (`answer`: the body
    of its refusal, if it was JSON)."""

    def __init__(self, message: str, answer: Any = None) -> None:
        super().__init__(message)
        self.answer = answer


class JobCancelled(FarmError):
    """The job was cancelled (by a user, or by a second SIGTERM)."""


class JobTimedOut(FarmError):
    """The job ran past its timeout_s."""
