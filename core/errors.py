"""A shallow exception tree: parsers raise these, `scan` turns them into findings."""

from __future__ import annotations


class AirlockError(Exception):
    """Base of every error Airlock raises on purpose."""


class FormatError(AirlockError, ValueError):
    """The bytes do not follow the format. Carries where it went wrong."""

    def __init__(self, message: str, offset: int | None = None, member: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.member = member


class LimitExceeded(AirlockError):
    """A time, size or count budget was exceeded."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class Cancelled(AirlockError):
    """The user cancelled the work."""


class PolicyMissing(AirlockError):
    """The policy data shipped in airlock.resources is missing: refuse to scan."""
