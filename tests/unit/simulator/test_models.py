"""Statistical checks that the device models produce traces shaped like real sensors."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from simulator.models import DAY_S, ColdChain, Context, Environmental, PowerMeter, Vibration, quantise
from simulator.plot import plot_day

START = 1_767_225_600.0  # midnight UTC


def trace(model_cls: type, seed: int, days: float = 3, step_s: float = 60.0) -> dict[str, np.ndarray]:
    model = model_cls(Context(random.Random(seed), step_s, 0))
    rows = [model.step(START + i * step_s, step_s) for i in range(int(days * DAY_S / step_s))]
    return {name: np.array([float(r[name]) for r in rows]) for name in rows[0]}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_temperature_has_a_daily_cycle_peaking_in_the_afternoon(seed: int) -> None:
    t = trace(Environmental, seed)["temperature"]
    spectrum = np.abs(np.fft.rfft(t - t.mean()))
    freqs = np.fft.rfftfreq(len(t), d=60.0)
    dominant = freqs[1:][np.argmax(spectrum[1:])]
    assert dominant == pytest.approx(1 / DAY_S, rel=0.05), "period of one day"
    per_day = t[: int(DAY_S / 60)]
    peak_hour = np.argmax(np.convolve(per_day, np.ones(60) / 60, mode="same")) / 60
    assert 12 <= peak_hour <= 18
    amplitude = (np.percentile(per_day, 95) - np.percentile(per_day, 5)) / 2
    assert 1.5 <= amplitude <= 6.5


def test_drift_sign_matches_the_device() -> None:
    for seed in range(6):
        model = Environmental(Context(random.Random(seed), 60.0, 0))
        t = trace(Environmental, seed, days=10)["temperature"]
        days = t.reshape(10, -1).mean(axis=1)
        slope = np.polyfit(np.arange(10), days, 1)[0]
        assert np.sign(slope) == np.sign(model.drift_per_day)


def test_humidity_moves_against_temperature() -> None:
    t = trace(Environmental, 7)
    assert np.corrcoef(t["temperature"], t["humidity"])[0, 1] < -0.5


def test_vibration_and_bearing_heat_follow_the_duty_cycle() -> None:
    t = trace(Vibration, 4, days=2, step_s=10.0)
    running = t["running"]
    assert 0.05 < running.mean() < 0.95, "the machine switches between regimes"
    assert np.corrcoef(running, t["vibration_rms"])[0, 1] > 0.8
    assert t["vibration_rms"][running == 1].mean() > 10 * t["vibration_rms"][running == 0].mean()
    assert t["bearing_temperature"][running == 1].mean() > t["bearing_temperature"][running == 0].mean()


def test_power_meter_energy_only_grows_and_current_follows_duty() -> None:
    t = trace(PowerMeter, 5, days=1, step_s=10.0)
    assert np.all(np.diff(t["energy"]) >= 0) and t["energy"][-1] > t["energy"][0]
    assert 220 < t["voltage"].mean() < 245 and t["voltage"].std() > 0.5
    assert np.all((t["power_factor"] >= 0) & (t["power_factor"] <= 1))


def test_cold_chain_moves_and_warms_with_the_door_open() -> None:
    t = trace(ColdChain, 3, days=2, step_s=30.0)
    moved = np.hypot(np.diff(t["latitude"]), np.diff(t["longitude"]))
    assert moved.sum() > 1.0
    door = t["door_open"] == 1
    assert door.any() and t["temperature"][door].mean() > t["temperature"][~door].mean()
    assert np.all(np.diff(t["battery"]) <= 0), "the battery only discharges"


def test_mean_reverting_noise_stays_bounded() -> None:
    t = trace(Environmental, 9, days=5)["pressure"]
    assert abs(t.mean() - 1013.25) < 3 and 1 < t.std() < 8


def test_quantisation_to_sensor_resolution() -> None:
    assert quantise("temperature", 21.04999) == 21.0
    assert quantise("humidity", 40.3) == 40.5
    assert quantise("latitude", 52.1234567) == 52.12346


def test_the_route_is_continuous() -> None:
    t = trace(ColdChain, 11, days=3, step_s=60.0)
    steps = np.hypot(np.diff(t["latitude"]), np.diff(t["longitude"]))
    assert steps.max() < 0.05, "no jumps between the end and the start of the route"


def test_plot_draws_a_png(tmp_path: Path) -> None:
    out = plot_day(tmp_path / "traces.png", seed=2, devices_per_type=1, step_s=600.0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
