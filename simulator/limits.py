"""AWS IoT Core's publish quotas, which a fleet must respect when it publishes to AWS.

See "AWS IoT Core endpoints and quotas" in the AWS General Reference. The per-connection limit is
fixed; the account's inbound rate is adjustable and differs by region, so it can be overridden.
"""

from __future__ import annotations

from simulator.exceptions import SimulatorError
from simulator.fleet import Fleet
from simulator.schedule import Burst, Constant, Ramp, Step
from toolkit.iot_quotas import ACCOUNT_PUBLISHES_PER_S, PUBLISHES_PER_S_PER_CONNECTION

# Inbound publish requests per second per connection (fixed), and per account (adjustable).
IOT_CORE_PUBLISHES_PER_CONNECTION_S = float(PUBLISHES_PER_S_PER_CONNECTION)
IOT_CORE_ACCOUNT_PUBLISHES_S = float(ACCOUNT_PUBLISHES_PER_S)
AWS_IOT_DOMAIN = ".amazonaws.com"


def is_aws_iot(host: str) -> bool:
    """A broker on AWS itself: its quotas apply whatever the run asked for."""
    return host.endswith(AWS_IOT_DOMAIN)


class LimitError(SimulatorError):
    """The run's plan exceeds a limit: an IoT Core quota, or what pre-generation may hold in memory."""


def peak_rates(fleet: Fleet, profile: Constant | Ramp | Step | Burst) -> tuple[float, float]:
    """(fastest device's peak msg/s, the fleet's peak msg/s) under the rate profile; jitter averages out."""
    factor = profile.peak()
    per_device = [factor / group.interval_s for group in fleet.devices]
    total = sum(factor / group.interval_s * group.count for group in fleet.devices)
    return max(per_device), total


def check_iot_core_limits(
    fleet: Fleet, profile: Constant | Ramp | Step | Burst, account_limit: float = IOT_CORE_ACCOUNT_PUBLISHES_S
) -> None:
    """Refuse a plan that IoT Core would throttle; sends beyond it are also paced by the transport."""
    device, total = peak_rates(fleet, profile)
    if device > IOT_CORE_PUBLISHES_PER_CONNECTION_S:
        raise LimitError(
            f"a device would publish up to {device:,.0f} msg/s, above IoT Core's "
            f"{IOT_CORE_PUBLISHES_PER_CONNECTION_S:.0f} publishes/s per connection; "
            "raise interval_s or lower the profile"
        )
    if total > account_limit:
        raise LimitError(
            f"the fleet would publish up to {total:,.0f} msg/s, above the account's inbound limit of "
            f"{account_limit:,.0f} publishes/s; use fewer devices, or request a quota increase and pass the new limit"
        )
