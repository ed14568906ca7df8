"""What the probe families share: how a refusal reads, and the row of a behaviour that matches AWS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

NONE_HERE = "none: what you test here behaves as on AWS"


def error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "ClientError"))
    return type(error).__name__


def refusal(call: Callable[[], Any], expected: str) -> str | None:
    """The error code a call was refused with, or None when it went through. Only the refusal AWS
    gives for the limit counts: any other error (access denied, throttling, an unsupported call) is
    no observation, and fails the probe."""
    try:
        call()
    except ClientError as error:
        if error_code(error) != expected:
            raise
        return error_code(error)
    return None
