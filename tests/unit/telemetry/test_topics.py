"""Device topic templates (telemetry/topics.py): the local broker's ACL and the things' IoT policy are
made of them, so a template that could widen either is refused."""

from __future__ import annotations

import pytest

from telemetry.topics import DEVICE_TOPIC_TEMPLATE, TopicError, device_topic_pattern


@pytest.mark.parametrize(
    "template",
    [
        "greenhouse/climate",  # no device id: every device could write every other's
        "greenhouse/{device_id}/{device_id}",
        "greenhouse/x{device_id}/climate",  # Mosquitto substitutes %u only as a whole level
        "greenhouse/{device_id}/#",
        "greenhouse/+/{device_id}",
        "$aws/things/{device_id}/shadow/update",
        "greenhouse//{device_id}",
        "/{device_id}",
        "greenhouse/{device_id}/climate\ntopic readwrite #",  # a second ACL line
        "greenhouse/{device_id}/cli mate",
        "greenhouse/{device_id}/%c",
        "greenhouse/{device_id}/*",  # a wildcard in an IoT policy, though not in Mosquitto's ACL
        "greenhouse/{device_id}/clim?te",
        "greenhouse/{device_id}/{site}",
        "greenhouse/{device_id}/\x00",
        "",
    ],
)
def test_a_template_that_could_widen_the_acl_is_refused(template: str) -> None:
    with pytest.raises(TopicError, match="device topic"):
        device_topic_pattern(template, "%u")


def test_the_device_level_takes_the_placeholder() -> None:
    assert device_topic_pattern(DEVICE_TOPIC_TEMPLATE, "%u") == "sensors/%u/telemetry"
    assert device_topic_pattern("greenhouse/{device_id}/climate", "+") == "greenhouse/+/climate"
    assert device_topic_pattern("{device_id}", "%u") == "%u"
