"""Where the cores went at the bench's best rate: one stacked bar of CPU per stored message by
process, beside what the machine's cores allow per message at that rate and the emulator's own
cost in the ceiling probe (a picture for the report and the docs)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def cpu_bar(cpu_us_per_msg: dict[str, float], rate_msg_s: float, ceiling_us_per_msg: float, path: Path) -> Path:
    """Draw the bar into `path` (PNG): each process's us per message, the largest first, the cores'
    budget at `rate_msg_s` as a line, and the emulator's us per message in the ceiling probe."""
    cores = os.cpu_count() or 1
    budget_us = cores * 1e6 / rate_msg_s if rate_msg_s else 0.0
    fig, ax = plt.subplots(figsize=(9, 2.8))
    left = 0.0
    for name, us in sorted(cpu_us_per_msg.items(), key=lambda kv: -kv[1]):
        ax.barh(["at the best rate"], [us], left=[left], label=f"{name} {us:,.0f}")
        left += us
    if ceiling_us_per_msg:
        ax.barh(["emulator, ceiling probe"], [ceiling_us_per_msg], color="grey", label="emulator in the probe")
    if budget_us:
        ax.axvline(budget_us, color="black", linestyle="--")
        ax.annotate(f"{cores} cores at {rate_msg_s:,.0f} msg/s: {budget_us:,.0f} us", (budget_us, 1.3), ha="right")
    ax.set_xlabel("CPU us per stored message")
    ax.set_title(f"Where the cores went at {rate_msg_s:,.0f} msg/s: {left:,.0f} us per message in all")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=4, fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
