"""telemetry's DEVICE_TYPES and SENSORS are the one registry of device types: every table the
simulator keeps per type or per sensor names only what they define and covers what it must, so
adding a device type or a sensor is one obvious change (the alert thresholds infra/ deploys are
checked against them in tests/contract/test_infra_contract.py)."""

from __future__ import annotations

from typing import get_args

from simulator.devices import SPIKE_SCALE
from simulator.fleet import DeviceTypeName
from simulator.models import MODELS, RESOLUTION, UNITS
from telemetry.schema import DEVICE_TYPES, SENSORS

# On/off channels: reported as booleans, never quantised or spiked.
SWITCHES = {name for name, sensor in SENSORS.items() if sensor.unit == "bool"}


def test_the_fleet_file_accepts_exactly_the_schemas_device_types() -> None:
    assert set(get_args(DeviceTypeName)) == set(DEVICE_TYPES)


def test_each_device_type_has_a_model_that_reports_its_sensors() -> None:
    assert set(MODELS) == set(DEVICE_TYPES)


def test_every_sensor_has_a_unit_and_every_measured_one_a_resolution() -> None:
    assert set(UNITS) == set(SENSORS)
    assert set(RESOLUTION) == set(SENSORS) - SWITCHES


def test_spikes_are_scaled_only_for_known_measured_sensors() -> None:
    assert set(SPIKE_SCALE) <= set(SENSORS) - SWITCHES
