"""The settings table: a value is checked where it is read, the default stands for an unset or empty
variable, and each tool's --help lists what it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.settings import SETTINGS, SettingError, check_all, epilog, markdown


def test_an_unset_or_empty_variable_takes_the_default() -> None:
    port = SETTINGS["MQTT_PORT"]
    assert port.number({}) == 1883 and port.number({"MQTT_PORT": ""}) == 1883
    assert port.number({"MQTT_PORT": "2883"}) == 2883


@pytest.mark.parametrize("value", ["0", "65536", "-1", "1883.0", " 1883", "port"])
def test_a_port_that_is_not_one_is_refused_by_name(value: str) -> None:
    with pytest.raises(SettingError, match=f"MQTT_PORT={value!r}: give a port number from 1 to 65535"):
        SETTINGS["MQTT_PORT"].number({"MQTT_PORT": value})


def test_a_flag_is_anything_but_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRY_RUN", raising=False)
    assert not SETTINGS["DRY_RUN"].flag()
    for value, expected in (("0", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("DRY_RUN", value)
        assert SETTINGS["DRY_RUN"].flag() is expected


def test_a_path_setting_resolves_its_value_else_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDDED_STATE_DIR", raising=False)
    assert SETTINGS["EMBEDDED_STATE_DIR"].path(tmp_path / "fallback") == (tmp_path / "fallback").resolve()
    monkeypatch.setenv("EMBEDDED_STATE_DIR", str(tmp_path / "mine"))
    assert SETTINGS["EMBEDDED_STATE_DIR"].path(tmp_path / "fallback") == (tmp_path / "mine").resolve()


def test_check_all_names_every_bad_value_of_a_part_and_only_its_own() -> None:
    env = {"MQTT_PORT": "x", "IOT_MQTT_PORT": "99999", "SIMULATOR_SIGNING_KEY": "k"}
    assert check_all("testbed", env) == [
        "MQTT_PORT='x': give a port number from 1 to 65535",
        "IOT_MQTT_PORT='99999': give a port number from 1 to 65535",
    ]
    assert check_all("simulator", env) == []


def test_each_tools_help_lists_the_environment_it_reads_and_the_table_lists_all() -> None:
    assert "SIMULATOR_SIGNING_KEY" in epilog("simulator") and "BACKEND" not in epilog("simulator")
    assert "BACKEND" in epilog("testbed") and "TESTBED_TERRAFORM_TIMEOUT_S" in epilog("testbed")
    table = markdown()
    assert all(f"| `{name}` |" in table for name in SETTINGS)
