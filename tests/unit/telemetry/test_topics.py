"""Device topic templates (telemetry/topics.py): the local broker's ACL and the things' IoT policy are
made of them, so a template that could widen either is refused."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.topics import DEVICE_ID, DEVICE_TOPIC, DEVICE_TOPIC_TEMPLATE, DeviceTopic, TopicError, basic_ingest_topic


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
        DeviceTopic(template).pattern("%u")


def test_the_device_level_takes_the_placeholder() -> None:
    assert DeviceTopic(DEVICE_TOPIC_TEMPLATE).pattern("%u") == "sensors/%u/telemetry"
    assert DeviceTopic("greenhouse/{device_id}/climate").pattern("+") == "greenhouse/+/climate"
    assert DeviceTopic("{device_id}").pattern("%u") == "%u"


LEVEL = st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12)
# what MQTT lets a client id hold in a topic level: anything but a separator, a wildcard or NUL
DEVICE_IDS = st.text(min_size=1, max_size=40).filter(lambda s: not set(s) & {"/", "+", "#", "\0"})


@st.composite
def templates(draw: st.DrawFn) -> str:
    levels = draw(st.lists(LEVEL, min_size=0, max_size=5))
    levels.insert(draw(st.integers(0, len(levels))), DEVICE_ID)
    return "/".join(levels)


@given(template=templates(), device_id=DEVICE_IDS)
def test_a_devices_topic_reads_back_as_its_id(template: str, device_id: str) -> None:
    topic = DeviceTopic(template)
    rendered = topic.for_device(device_id)
    assert topic.device_of(rendered) == device_id
    assert topic.pattern("+").count("+") == 1  # every such template gives the ACL its one device level
    behind_rule = DeviceTopic(template, "ingest_rule").for_device(device_id)
    assert basic_ingest_topic(behind_rule, "ingest_rule") == rendered


@given(template=templates(), device_id=DEVICE_IDS, extra=LEVEL)
def test_a_topic_of_another_shape_names_no_device(template: str, device_id: str, extra: str) -> None:
    topic = DeviceTopic(template)
    assert topic.device_of(f"{extra}/{topic.for_device(device_id)}/{extra}") is None
    with pytest.raises(TopicError):
        topic.for_device(f"{device_id}/{extra}")


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("plant/+/up", "is a filter or a reserved topic"),
        ("plant/{site}/up", "the only placeholder is {device_id}"),
        ("a/{", "the only placeholder is {device_id}"),
        ("$aws/things/{device_id}/shadow/update", "is a filter or a reserved topic"),
    ],
)
def test_a_template_that_names_no_topic_a_device_publishes_to_is_refused_when_made(template: str, why: str) -> None:
    with pytest.raises(TopicError, match=re.escape(why)):
        DeviceTopic(template)


def test_one_topic_for_the_whole_fleet_is_a_topic_but_no_acl() -> None:
    """The simulator may send a fleet to one topic of a team's broker; the testbed's ACL needs the id."""
    shared = DeviceTopic("plant/all/up")
    assert shared.for_device("d1") == "plant/all/up" and shared.device_of("plant/all/up") is None
    with pytest.raises(TopicError, match="must be one whole level"):
        shared.pattern("%u")


@pytest.mark.parametrize("template", ["a/{{b}}/{device_id}", "a/{{device_id}}", "a/}{device_id}"])
def test_a_brace_beside_the_placeholder_is_refused_not_rendered_another_way(template: str) -> None:
    with pytest.raises(TopicError, match="the only placeholder is"):
        DeviceTopic(template)


@pytest.mark.parametrize("device_id", ["a/b", "#", "+", "dev\x00", ""])
def test_an_id_that_would_change_the_topics_shape_is_refused_and_never_read_back(device_id: str) -> None:
    with pytest.raises(TopicError, match="an id is one topic level"):
        DEVICE_TOPIC.for_device(device_id)
    assert DEVICE_TOPIC.device_of(f"sensors/{device_id}/telemetry") is None
