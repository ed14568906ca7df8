"""A device's password on the local broker, derived from the stack's broker secret: the broker's
password file and every device (the simulator, a test client) compute it alike, so nothing is
stored per device. On AWS, devices authenticate with X.509 certificates instead."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable


def device_password(secret: bytes, username: str) -> str:
    """The broker password of `username` (a device id, or the bridge's user)."""
    return hmac.new(secret, username.encode(), hashlib.sha256).hexdigest()[:32]


def broker_credentials(secret: bytes) -> Callable[[str], tuple[str, str]]:
    """Username and password of each device on the local broker."""
    return lambda device_id: (device_id, device_password(secret, device_id))
