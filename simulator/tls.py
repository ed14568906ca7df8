"""MQTT over TLS with one X.509 certificate per device, as AWS IoT Core requires.

Certificates come from `bin/testbed provision` (AWS or ministack's IoT API), which writes
`<device>.cert.pem` and `<device>.private.key` per device into one folder.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from simulator.exceptions import SimulatorError

CERT_SUFFIX = ".cert.pem"
KEY_SUFFIX = ".private.key"
# AWS IoT Core's MQTT port for X.509 client certificates.
IOT_MQTT_TLS_PORT = 8883


class TlsError(SimulatorError):
    """A device has no usable certificate, or the CA file is missing."""


@dataclass(frozen=True)
class DeviceCertificates:
    """Builds each device's TLS context from the provisioned folder.

    `ca_file` is the broker's CA (ministack serves its own; on AWS, Amazon Root CA 1); None uses
    the system trust store.
    """

    cert_dir: Path
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.cert_dir.is_dir():
            raise TlsError(f"certificate folder {self.cert_dir} does not exist (run `bin/testbed provision`)")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise TlsError(f"CA file {self.ca_file} does not exist")

    def paths(self, device_id: str) -> tuple[Path, Path]:
        cert, key = self.cert_dir / f"{device_id}{CERT_SUFFIX}", self.cert_dir / f"{device_id}{KEY_SUFFIX}"
        if not cert.is_file() or not key.is_file():
            raise TlsError(
                f"no certificate for device {device_id!r} in {self.cert_dir} "
                f"(expected {cert.name} and {key.name}; provision the fleet's devices first)"
            )
        return cert, key

    def context(self, device_id: str) -> ssl.SSLContext:
        """A client context that verifies the broker and presents this device's certificate."""
        cert, key = self.paths(device_id)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TlsError(f"certificate or key of device {device_id!r} is unusable: {exc}") from None
        return context

    def check(self, device_ids: list[str]) -> None:
        """Fail before connecting anyone when a device of the run has no certificate."""
        for device_id in device_ids:
            self.paths(device_id)
