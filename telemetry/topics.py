"""The MQTT topic a device publishes its telemetry to. One level is the device's own id, so the
local broker's ACL and IoT Core's policy can let each device write only its own topic, and the
topic rule can take the device id from it (`topic(2)` in its SQL)."""

from __future__ import annotations

# Which level of the topic (1-based, as IoT SQL's topic(n) counts) holds the device id.
DEVICE_ID_LEVEL = 2


def telemetry_topic(device_id: str) -> str:
    """The topic of one device; a wildcard or a placeholder (`+`, `%u`, a policy variable) in place
    of the id gives the filter or pattern that matches every device's."""
    return f"sensors/{device_id}/telemetry"


TELEMETRY_FILTER = telemetry_topic("+")
# A device's topic with a placeholder for its id: this project's layout, or a team's own
# (TESTBED_DEVICE_TOPIC), from which the local broker's ACL and the things' IoT policy are made.
DEVICE_ID = "{device_id}"
DEVICE_TOPIC_TEMPLATE = telemetry_topic(DEVICE_ID)


class TopicError(ValueError):
    """A device topic template the broker's ACL or an IoT policy cannot be made from."""


def device_topic_pattern(template: str, placeholder: str) -> str:
    """`template` with `placeholder` (Mosquitto's `%u`, a wildcard, an IoT policy variable) for the
    device id. The id must be one whole level, and the rest plain text: an ACL line is made of it."""
    levels = template.split("/")
    rest = template.replace(DEVICE_ID, "", 1)
    if levels.count(DEVICE_ID) != 1 or DEVICE_ID in rest:
        raise TopicError(f"device topic {template!r}: {DEVICE_ID} must be one whole level of it, once")
    if (
        template.startswith("$")
        or "" in levels
        or any(c in rest for c in "+#{}%*?")
        or any(c.isspace() or not c.isprintable() for c in template)
    ):
        raise TopicError(
            f"device topic {template!r}: a topic a device publishes to, without wildcards (MQTT's + #, IoT "
            "policies' * ?), $, %, empty levels or white space"
        )
    return template.replace(DEVICE_ID, placeholder)


# AWS IoT Basic Ingest: a publish to $aws/rules/<rule name>/<topic> reaches that rule alone (no
# broker subscription, no messaging charge), which sees <topic> as the message's topic.
BASIC_INGEST_PREFIX = "$aws/rules/"


def basic_ingest_filter(rule_name: str) -> str:
    """The filter of every Basic Ingest topic of one rule."""
    return f"{BASIC_INGEST_PREFIX}{rule_name}/#"


def basic_ingest_topic(topic: str, rule_name: str) -> str | None:
    """The topic the rule sees for a Basic Ingest publish to `topic`, or None if it is not one for it."""
    prefix = f"{BASIC_INGEST_PREFIX}{rule_name}/"
    return topic[len(prefix) :] if topic.startswith(prefix) and len(topic) > len(prefix) else None
