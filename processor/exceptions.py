"""Exceptions that decide a record's fate: rejected (quarantined) or transient (retried)."""

from __future__ import annotations

from telemetry.reasons import RejectReason


class RecordRejected(Exception):
    """The record can never be accepted; it goes to the quarantine with this reason."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class TransientFailure(Exception):
    """A dependency failed for this record; SQS delivers it again (batchItemFailures)."""


class ConfigurationError(Exception):
    """The function's environment is incomplete or malformed."""
