"""Draw a few devices' sensor traces over a simulated day, so a user can see what the models do."""

from __future__ import annotations

import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from simulator.models import DAY_S, MODELS, UNITS, Context, reading_pairs
from telemetry.schema import DEVICE_TYPES

PLOT_EPOCH = 1_767_225_600.0  # midnight UTC


def plot_day(out: Path, seed: int = 1, devices_per_type: int = 2, step_s: float = 60.0, days: float = 1.0) -> Path:
    """One column per device type, one row per sensor; each line is one device."""
    types = list(MODELS)
    rows = max(len(DEVICE_TYPES[t].sensors) for t in types)
    fig, axes = plt.subplots(rows, len(types), figsize=(4.5 * len(types), 1.9 * rows), sharex=True, squeeze=False)
    steps = int(days * DAY_S / step_s)
    hours = [i * step_s / 3600 for i in range(steps)]
    for col, device_type in enumerate(types):
        sensors = DEVICE_TYPES[device_type].sensors
        for n in range(devices_per_type):
            model = MODELS[device_type](Context(random.Random(f"{seed}:{device_type}:{n}"), step_s, n))
            series: dict[str, list[float]] = {s: [] for s in sensors}
            for i in range(steps):
                pairs = reading_pairs(model.step(PLOT_EPOCH + i * step_s, step_s), sensors)
                for name, (value, _) in pairs.items():
                    series[name].append(float(value))
            for row, name in enumerate(sensors):
                ax = axes[row][col]
                ax.plot(hours, series[name], linewidth=0.8, label=f"device {n}")
                ax.set_ylabel(f"{name} [{UNITS[name]}]", fontsize=8)
                ax.tick_params(labelsize=7)
        axes[0][col].set_title(device_type)
        for row in range(len(sensors), rows):
            axes[row][col].axis("off")
        axes[len(sensors) - 1][col].set_xlabel("hour of the simulated day (UTC)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
