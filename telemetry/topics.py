"""The MQTT topic a device publishes its telemetry to. One level is the device's own id, so the
local broker's ACL and IoT Core's policy can let each device write only its own topic, and the
topic rule can take the device id from it (`topic(2)` in its SQL)."""

from __future__ import annotations

import string
from dataclasses import dataclass

# Which level of the topic (1-based, as IoT SQL's topic(n) counts) holds the device id.
DEVICE_ID_LEVEL = 2
# A device's topic with a placeholder for its id: this project's layout, or a team's own
# (TESTBED_DEVICE_TOPIC), from which the local broker's ACL and the things' IoT policy are made.
DEVICE_ID = "{device_id}"
DEVICE_TOPIC_TEMPLATE = "sensors/{device_id}/telemetry"
# What no topic a device publishes to holds: MQTT's wildcards (and the NUL MQTT forbids).
WILDCARDS = ("+", "#")
# AWS IoT Basic Ingest: a publish to $aws/rules/<rule name>/<topic> reaches that rule alone (no
# broker subscription, no messaging charge), which sees <topic> as the message's topic.
BASIC_INGEST_PREFIX = "$aws/rules/"


def _is_device_id(text: str) -> bool:
    """One topic level a device's id can be: not empty, no separator, no wildcard, no NUL."""
    return bool(text) and not any(c in text for c in ("/", *WILDCARDS, "\0"))


class TopicError(ValueError):
    """A device topic that is no topic a device could publish to, or one the broker's ACL or an IoT
    policy cannot be made from."""


@dataclass(frozen=True)
class DeviceTopic:
    """The topic every device publishes to, `{device_id}` standing for each one's id (a template
    without it is one topic for the whole fleet). The only place a device's topic is built or read
    back; a template that names no topic a device publishes to is refused when it is made."""

    template: str = DEVICE_TOPIC_TEMPLATE
    # Basic Ingest: each device publishes behind `$aws/rules/<rule>/`, straight to that rule
    basic_ingest_rule: str | None = None

    def __post_init__(self) -> None:
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(self.template)]
        except ValueError:
            fields = [("", "", None)]
        stray_brace = any(c in self.template.replace(DEVICE_ID, "") for c in "{}")  # `{{`: no escapes either
        if stray_brace or any(
            name is not None and (name != "device_id" or spec or conv) for name, spec, conv in fields
        ):
            raise TopicError(f"device topic {self.template!r}: the only placeholder is {DEVICE_ID}, as it is")
        example = self.template.replace(DEVICE_ID, "x")
        if not example or example.startswith("$") or any(c in example for c in (*WILDCARDS, "\0")):
            raise TopicError(
                f"device topic {self.template!r} is a filter or a reserved topic, not one a device publishes to"
            )
        rule = self.basic_ingest_rule
        if rule is not None and (not rule or any(c in rule for c in "/+#")):
            raise TopicError(f"Basic Ingest rule name {rule!r} is not a rule name")

    @property
    def per_device(self) -> bool:
        """Whether each device has a topic of its own (the id is in it)."""
        return DEVICE_ID in self.template

    def for_device(self, device_id: str) -> str:
        """The topic `device_id` publishes to (behind `$aws/rules/<rule>/` with Basic Ingest). An id
        that would make it another shape (a level separator, a wildcard) is refused."""
        if not _is_device_id(device_id):
            raise TopicError(f"device id {device_id!r}: an id is one topic level, without / + # or NUL")
        topic = self.template.replace(DEVICE_ID, device_id)
        return f"{BASIC_INGEST_PREFIX}{self.basic_ingest_rule}/{topic}" if self.basic_ingest_rule else topic

    def device_of(self, topic: str) -> str | None:
        """The device id in a topic the rule sees (`for_device` without Basic Ingest's prefix), or
        None if the topic is not one of this template's."""
        if not self.per_device:
            return None
        before, after = self.template.split(DEVICE_ID, 1)
        if not (topic.startswith(before) and topic.endswith(after)) or len(topic) <= len(before) + len(after):
            return None
        device_id = topic[len(before) : len(topic) - len(after)]
        return device_id if _is_device_id(device_id) else None

    def pattern(self, placeholder: str) -> str:
        """The template with `placeholder` (Mosquitto's `%u`, a wildcard, an IoT policy variable) for
        the device id. The id must be one whole level, and the rest plain text: an ACL line is made
        of it, so a template that could widen the ACL or the policy is refused."""
        levels = self.template.split("/")
        rest = self.template.replace(DEVICE_ID, "", 1)
        if levels.count(DEVICE_ID) != 1 or DEVICE_ID in rest:
            raise TopicError(f"device topic {self.template!r}: {DEVICE_ID} must be one whole level of it, once")
        if "" in levels or any(c in rest for c in "{}%*?") or any(c.isspace() or not c.isprintable() for c in rest):
            raise TopicError(
                f"device topic {self.template!r}: a topic a device publishes to, without wildcards (MQTT's + #, IoT "
                "policies' * ?), $, %, empty levels or white space"
            )
        return self.template.replace(DEVICE_ID, placeholder)


# This project's layout: every device's topic, and the filter that matches them all.
DEVICE_TOPIC = DeviceTopic()
TELEMETRY_FILTER = DEVICE_TOPIC.pattern("+")


def telemetry_topic(device_id: str) -> str:
    """One device's topic in this project's layout."""
    return DEVICE_TOPIC.for_device(device_id)


def basic_ingest_filter(rule_name: str) -> str:
    """The filter of every Basic Ingest topic of one rule."""
    return f"{BASIC_INGEST_PREFIX}{rule_name}/#"


def basic_ingest_topic(topic: str, rule_name: str) -> str | None:
    """The topic the rule sees for a Basic Ingest publish to `topic`, or None if it is not one for it."""
    prefix = f"{BASIC_INGEST_PREFIX}{rule_name}/"
    return topic[len(prefix) :] if topic.startswith(prefix) and len(topic) > len(prefix) else None
