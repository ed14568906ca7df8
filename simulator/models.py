"""Device models: sensor traces that look real (daily cycles, mean-reverting noise, drift,
correlated channels, on/off regimes, quantisation, battery discharge, signal strength, routes).

Every model draws only from its own `random.Random`, so a seed reproduces a trace exactly.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass

from telemetry.schema import SENSORS

DAY_S = 86_400.0
# Sensor resolution: what the hardware reports is quantised to these steps.
RESOLUTION = {
    "temperature": 0.1,
    "humidity": 0.5,
    "pressure": 0.1,
    "co2": 1.0,
    "vibration_rms": 0.01,
    "vibration_peak": 0.01,
    "bearing_temperature": 0.1,
    "voltage": 0.1,
    "current": 0.01,
    "power_factor": 0.01,
    "energy": 0.001,
    "latitude": 1e-5,
    "longitude": 1e-5,
    "battery": 1.0,
    "rssi": 1.0,
}
# Each reading is reported in the canonical unit its schema gives it.
UNITS = {name: sensor.unit for name, sensor in SENSORS.items()}

Readings = dict[str, float | bool]


def _exact_step(step: float) -> tuple[float, int, int]:
    """A decimal step as (step, k, scale) with step == k / scale exactly, e.g. 0.5 -> (0.5, 5, 10)."""
    scale = 10 ** max(0, -math.floor(math.log10(step)))
    return step, round(step * scale), scale


_STEPS = {name: _exact_step(step) for name, step in RESOLUTION.items()}


def quantise(name: str, value: float) -> float:
    """The value as the sensor reports it; integral results are ints (their canonical JSON form).

    Integer arithmetic, then one correctly rounded division: the nearest float to the decimal
    reading, with no second rounding pass (this runs for every reading of every message).
    """
    step, k, scale = _STEPS[name]
    n = round(value / step) * k
    return n // scale if n % scale == 0 else n / scale


class OrnsteinUhlenbeck:
    """Mean-reverting noise: x drifts back to 0 at rate `theta` (1/s) with stationary std `sigma`."""

    def __init__(self, rng: random.Random, theta: float, sigma: float) -> None:
        self.rng, self.theta, self.sigma = rng, theta, sigma
        self.x = rng.gauss(0.0, sigma)
        self._dt = -1.0
        self._decay = self._scale = 0.0

    def step(self, dt: float) -> float:
        if dt != self._dt:  # devices report at a steady interval: reuse the exact coefficients
            self._dt, self._decay = dt, math.exp(-self.theta * dt)
            self._scale = self.sigma * math.sqrt(1 - self._decay * self._decay)
        self.x = self.x * self._decay + self._scale * self.rng.gauss(0.0, 1.0)
        return self.x


class MarkovOnOff:
    """A two-state regime (machine running, door open) with mean dwell times in seconds."""

    def __init__(self, rng: random.Random, mean_on_s: float, mean_off_s: float, on: bool = False) -> None:
        self.rng, self.mean_on_s, self.mean_off_s, self.on = rng, mean_on_s, mean_off_s, on

    def step(self, dt: float) -> bool:
        mean = self.mean_on_s if self.on else self.mean_off_s
        if self.rng.random() < 1 - math.exp(-dt / mean):
            self.on = not self.on
        return self.on


def daily(t_s: float, peak_hour: float) -> float:
    """A unit daily cycle, +1 at `peak_hour` (UTC), -1 twelve hours later."""
    return math.cos(2 * math.pi * ((t_s / DAY_S) - peak_hour / 24.0))


class Battery:
    """State of charge falls with each report; the reported % follows a Li-ion-like curve."""

    def __init__(self, rng: random.Random, drain_per_report: float) -> None:
        self.charge = rng.uniform(0.35, 1.0)
        self.drain = drain_per_report

    def step(self) -> float:
        self.charge = max(0.0, self.charge - self.drain)
        # flat plateau, then a knee below ~15 % charge
        level = math.pow(self.charge, 0.6) if self.charge > 0.15 else math.pow(0.15, 0.6) * self.charge / 0.15
        return 100.0 * level


@dataclass
class Context:
    """Per-device constants shared by the channel models."""

    rng: random.Random
    interval_s: float
    site_index: int


class DeviceModel(ABC):
    """One device's sensors; `step(t_s, dt)` returns the next readings in canonical units."""

    def __init__(self, ctx: Context) -> None:
        self.rng = ctx.rng
        self.rssi_base = self.rng.uniform(-95.0, -55.0)
        self.rssi_noise = OrnsteinUhlenbeck(self.rng, theta=1 / 300, sigma=3.0)

    def rssi(self, dt: float) -> float:
        return max(-130.0, min(0.0, self.rssi_base + self.rssi_noise.step(dt)))

    @abstractmethod
    def step(self, t_s: float, dt: float) -> Readings:
        """Advance by `dt` seconds to simulated time `t_s` (epoch seconds)."""


class Environmental(DeviceModel):
    """Room climate: temperature with a daily cycle and drift, humidity moving against it, CO2 with occupancy."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        r = self.rng
        self.base = r.uniform(18.0, 24.0) + 0.5 * (ctx.site_index % 5)
        self.amplitude = r.uniform(2.0, 5.0)
        self.drift_per_day = r.choice((-1, 1)) * r.uniform(0.02, 0.2)
        self.t_noise = OrnsteinUhlenbeck(r, theta=1 / 600, sigma=0.4)
        self.h_noise = OrnsteinUhlenbeck(r, theta=1 / 900, sigma=1.5)
        self.p_noise = OrnsteinUhlenbeck(r, theta=1 / 7200, sigma=4.0)
        self.c_noise = OrnsteinUhlenbeck(r, theta=1 / 300, sigma=25.0)
        self.humidity_base = r.uniform(35.0, 60.0)
        self.battery = Battery(r, drain_per_report=r.uniform(1e-6, 5e-6))
        self.start: float | None = None

    def step(self, t_s: float, dt: float) -> Readings:
        self.start = t_s if self.start is None else self.start
        cycle = daily(t_s, peak_hour=15.0)
        drift = self.drift_per_day * (t_s - self.start) / DAY_S
        temperature = self.base + self.amplitude * cycle + drift + self.t_noise.step(dt)
        humidity = self.humidity_base - 2.5 * (temperature - self.base) + self.h_noise.step(dt)
        occupancy = max(0.0, daily(t_s, peak_hour=13.0))
        return {
            "temperature": temperature,
            "humidity": min(100.0, max(0.0, humidity)),
            "pressure": 1013.25 + self.p_noise.step(dt),
            "co2": max(380.0, 420.0 + 600.0 * occupancy + self.c_noise.step(dt)),
            "battery": self.battery.step(),
            "rssi": self.rssi(dt),
        }


class Vibration(DeviceModel):
    """A machine monitor: on/off duty as a Markov chain, vibration and bearing heat follow the duty."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        r = self.rng
        self.duty = MarkovOnOff(r, mean_on_s=r.uniform(600, 3600), mean_off_s=r.uniform(300, 1800), on=r.random() < 0.6)
        self.rms_on = r.uniform(1.5, 4.0)
        self.wear_per_day = r.uniform(0.01, 0.1)
        self.rms_noise = OrnsteinUhlenbeck(r, theta=1 / 30, sigma=0.25)
        self.ambient = r.uniform(20.0, 30.0)
        self.bearing = self.ambient
        self.start: float | None = None

    def step(self, t_s: float, dt: float) -> Readings:
        self.start = t_s if self.start is None else self.start
        running = self.duty.step(dt)
        wear = self.wear_per_day * (t_s - self.start) / DAY_S
        rms = (self.rms_on + wear + self.rms_noise.step(dt)) if running else 0.05 + abs(self.rms_noise.x) * 0.05
        rms = max(0.0, rms)
        target = self.ambient + (35.0 + 5.0 * wear if running else 0.0)
        self.bearing += (target - self.bearing) * (1 - math.exp(-dt / 900.0))
        return {
            "vibration_rms": rms,
            "vibration_peak": rms * self.rng.uniform(2.8, 4.2),
            "bearing_temperature": self.bearing + self.rng.gauss(0, 0.2),
            "running": running,
            "rssi": self.rssi(dt),
        }


class PowerMeter(DeviceModel):
    """Mains voltage with noise, current with the load's duty and daily demand, an energy counter that only grows."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        r = self.rng
        self.nominal = r.choice((230.0, 230.0, 240.0))
        self.v_noise = OrnsteinUhlenbeck(r, theta=1 / 60, sigma=1.8)
        self.duty = MarkovOnOff(r, mean_on_s=r.uniform(300, 1800), mean_off_s=r.uniform(300, 1800), on=True)
        self.load_a = r.uniform(5.0, 40.0)
        self.i_noise = OrnsteinUhlenbeck(r, theta=1 / 20, sigma=0.05)
        self.energy = r.uniform(0.0, 50_000.0)

    def step(self, t_s: float, dt: float) -> Readings:
        demand = 0.6 + 0.4 * max(0.0, daily(t_s, peak_hour=18.0))
        running = self.duty.step(dt)
        current = max(0.0, (self.load_a * demand if running else 0.3) * (1 + self.i_noise.step(dt)))
        voltage = self.nominal + self.v_noise.step(dt)
        power_factor = min(1.0, 0.78 + 0.18 * min(1.0, current / self.load_a) + self.rng.gauss(0, 0.005))
        self.energy += voltage * current * power_factor * dt / 3.6e6
        return {
            "voltage": voltage,
            "current": current,
            "power_factor": power_factor,
            "energy": self.energy,
            "rssi": self.rssi(dt),
        }


class ColdChain(DeviceModel):
    """A reefer tracker: a route between waypoints, stops with door openings that warm the load."""

    STOPS = ((52.5200, 13.4050), (52.3906, 13.0645), (51.3397, 12.3731), (50.1109, 8.6821), (48.1351, 11.5820))
    ROUTE = STOPS + STOPS[-2::-1]  # out and back, so the truck never jumps
    SPEED_DEG_S = 0.0003

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        r = self.rng
        self.setpoint = r.choice((2.0, 4.0, 5.0))
        self.temperature = self.setpoint
        self.t_noise = OrnsteinUhlenbeck(r, theta=1 / 120, sigma=0.15)
        self.door = MarkovOnOff(r, mean_on_s=120, mean_off_s=5400)
        self.leg = r.randrange(len(self.ROUTE) - 1)
        self.progress = r.random()
        self.battery = Battery(r, drain_per_report=r.uniform(2e-6, 8e-6))

    def _move(self, dt: float) -> tuple[float, float]:
        (lat0, lon0), (lat1, lon1) = self.ROUTE[self.leg], self.ROUTE[self.leg + 1]
        length = math.hypot(lat1 - lat0, lon1 - lon0)
        self.progress += self.SPEED_DEG_S * dt / length
        if self.progress >= 1.0:
            self.leg, self.progress = (self.leg + 1) % (len(self.ROUTE) - 1), 0.0
            (lat0, lon0), (lat1, lon1) = self.ROUTE[self.leg], self.ROUTE[self.leg + 1]
        return lat0 + (lat1 - lat0) * self.progress, lon0 + (lon1 - lon0) * self.progress

    def step(self, t_s: float, dt: float) -> Readings:
        door_open = self.door.step(dt)
        lat, lon = self._move(0.0 if door_open else dt)
        target = 18.0 if door_open else self.setpoint
        self.temperature += (target - self.temperature) * (1 - math.exp(-dt / (300.0 if door_open else 900.0)))
        return {
            "temperature": self.temperature + self.t_noise.step(dt),
            "door_open": door_open,
            "latitude": lat,
            "longitude": lon,
            "battery": self.battery.step(),
            "rssi": self.rssi(dt),
        }


MODELS: dict[str, type[DeviceModel]] = {
    "environmental": Environmental,
    "vibration": Vibration,
    "power_meter": PowerMeter,
    "cold_chain": ColdChain,
}


def reading_pairs(readings: Readings, sensors: tuple[str, ...]) -> dict[str, tuple[float | bool, str]]:
    """Quantised (value, unit) pairs for the sensors a device reports."""
    out: dict[str, tuple[float | bool, str]] = {}
    for name in sensors:
        value = readings[name]
        out[name] = (value, "bool") if isinstance(value, bool) else (quantise(name, value), UNITS[name])
    return out
