"""Payload signature check with the signing key from Secrets Manager, cached per container."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from processor.exceptions import RecordRejected, TransientFailure
from processor.types import RejectReason, Telemetry
from telemetry.schema import sign

logger = logging.getLogger(__name__)

KEY_CACHE_SECONDS = 300
# AWSPREVIOUS stays valid while devices roll over to a rotated key.
KEY_STAGES = ("AWSCURRENT", "AWSPREVIOUS")


class KeyRing:
    """The accepted signing keys, fetched at most once per `KEY_CACHE_SECONDS` per container."""

    def __init__(self, secrets_client: Any, secret_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = secrets_client
        self._secret_id = secret_id
        self._clock = clock
        self._keys: tuple[bytes, ...] = ()
        self._fetched_at = -float("inf")

    def keys(self) -> tuple[bytes, ...]:
        if self._clock() - self._fetched_at > KEY_CACHE_SECONDS:
            self._keys = self._fetch()
            self._fetched_at = self._clock()
        return self._keys

    def _fetch(self) -> tuple[bytes, ...]:
        keys: list[bytes] = []
        for stage in KEY_STAGES:
            try:
                secret = self._client.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
            except ClientError as exc:
                if stage != "AWSCURRENT" and exc.response["Error"]["Code"] == "ResourceNotFoundException":
                    continue
                raise TransientFailure(f"signing key {stage} unavailable: {exc}") from exc
            if "SecretString" not in secret:
                logger.warning("signing key version %s has no string value; skipped", stage)
                continue
            key = secret["SecretString"].encode()
            if key not in keys:
                keys.append(key)
        if not keys:
            raise TransientFailure("the signing secret holds no usable key")
        logger.info("loaded %d signing key version(s)", len(keys))
        return tuple(keys)


def verify(message: Telemetry, keys: tuple[bytes, ...]) -> None:
    """Raise `RecordRejected(BAD_SIGNATURE)` unless one accepted key signed this payload."""
    claimed = message.raw["sig"]
    if not any(hmac.compare_digest(sign(message.raw, key), claimed) for key in keys):
        raise RecordRejected(RejectReason.BAD_SIGNATURE, "signature matches no current or previous key")
