"""Payload signature check with the signing key from Secrets Manager, cached per container."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from botocore.exceptions import ClientError

from processor.exceptions import RecordRejected, TransientFailure
from processor.types import SecretReader, Telemetry
from telemetry.reasons import RejectReason
from telemetry.schema import signature

logger = logging.getLogger(__name__)

KEY_CACHE_SECONDS = 300
# After a signature mismatch the keys are reloaded (a rotation may have happened since they were
# cached), but at most this often, so a stream of forged messages cannot hammer Secrets Manager.
KEY_REFRESH_MIN_SECONDS = 10
# AWSPREVIOUS stays valid while devices roll over to a rotated key.
KEY_STAGES = ("AWSCURRENT", "AWSPREVIOUS")


class KeyRing:
    """The accepted signing keys, fetched once per `KEY_CACHE_SECONDS` per container, or sooner
    (at most once per `KEY_REFRESH_MIN_SECONDS`) when a message matches none of them.
    """

    def __init__(
        self, secrets_client: SecretReader, secret_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = secrets_client
        self._secret_id = secret_id
        self._clock = clock
        self._keys: tuple[bytes, ...] = ()
        self._fetched_at = -float("inf")

    def keys(self) -> tuple[bytes, ...]:
        if self._clock() - self._fetched_at > KEY_CACHE_SECONDS:
            self._load()
        return self._keys

    def authenticate(self, message: Telemetry) -> None:
        """`verify` against the cached keys; after a mismatch, against freshly loaded ones.

        A rotation may have happened since the keys were cached; without the reload a warm
        container would reject the new key's messages until the cache expired.
        Raises `TransientFailure` if that reload finds Secrets Manager unavailable.
        """
        try:
            verify(message, self.keys())
        except RecordRejected:
            if not self._reload_early():
                raise
            logger.info("signing keys reloaded early after a signature mismatch")
            verify(message, self._keys)

    def _reload_early(self) -> bool:
        """Reload the keys unless that happened in the last `KEY_REFRESH_MIN_SECONDS`; True if they changed."""
        if self._clock() - self._fetched_at < KEY_REFRESH_MIN_SECONDS:
            return False
        previous = self._keys
        self._load()
        return self._keys != previous

    def _load(self) -> None:
        self._keys = self._fetch()
        self._fetched_at = self._clock()

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
    """Raise `RecordRejected(BAD_SIGNATURE)` unless one accepted key signed this payload.

    `hmac.compare_digest` refuses non-ASCII strings; such a claim matches no hex digest anyway.
    """
    claimed = message.raw["sig"]
    if not claimed.isascii() or not any(
        hmac.compare_digest(signature(message.canonical, key), claimed) for key in keys
    ):
        raise RecordRejected(RejectReason.BAD_SIGNATURE, "signature matches no current or previous key")
