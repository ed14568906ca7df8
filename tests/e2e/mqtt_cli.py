"""mosquitto_pub as a third-party device, its password kept off the command line (any user's `ps` reads argv)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

OPTIONS_FILE = "mosquitto_pub"  # what mosquitto_pub reads its default options from, in $XDG_CONFIG_HOME


def mosquitto_pub(
    host: str, port: int, user: str, password: str, topic: str, payload: str | bytes, check: bool = True
) -> None:
    """Publish one QoS 1 message; with `check`, CalledProcessError when the broker refuses it.

    mosquitto_pub has no option to read a password from stdin or a file of its own, but it reads
    default options from $XDG_CONFIG_HOME/mosquitto_pub: `-P` goes there, in a private folder.
    The payload goes through stdin (`-s`), so any bytes and any size get through; an empty one is
    `-n` (mosquitto_pub refuses an empty stdin).
    """
    data = payload.encode() if isinstance(payload, str) else payload
    with tempfile.TemporaryDirectory() as config_home:  # created 0700
        fd = os.open(Path(config_home) / OPTIONS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as options:
            options.write(f"-P {password}\n")
        subprocess.run(
            ["mosquitto_pub", "-h", host, "-p", str(port), "-q", "1", "-u", user, "-t", topic, "-s" if data else "-n"],
            input=data,
            env={**os.environ, "XDG_CONFIG_HOME": config_home},
            check=check,
            capture_output=True,
            timeout=10,
        )
