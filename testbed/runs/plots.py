"""A run's PNG plots: published against stored per second (faults shaded), end-to-end latency,
the worst lag per second, and each hop's percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from testbed.runs.hops import ACK_HOP, ARCHIVE_HOP, HOPS


def per_second(stored_at_s: np.ndarray, first: int, last: int) -> np.ndarray:
    """Items stored in each second from `first` to `last`: a second in which nothing was stored is a
    zero, not a gap the line is drawn straight across (an outage must show as one)."""
    counts = np.zeros(max(last - first + 1, 0), dtype=int)
    if len(stored_at_s):
        seconds = stored_at_s.astype(int) - first
        inside = seconds[(seconds >= 0) & (seconds < len(counts))]
        np.add.at(counts, inside, 1)
    return counts


def plot_throughput(
    path: Path,
    sent_per_s: dict[str, int],
    stored_at_s: np.ndarray,
    faults: Sequence[tuple[float, float, str]] = (),
    title: str = "",
) -> None:
    """Published and stored per second; each fault is a shaded span from its start until the part was back."""
    sent = {int(k): v for k, v in sent_per_s.items()}
    stored_seconds = [int(stored_at_s.min()), int(stored_at_s.max())] if len(stored_at_s) else []
    bounds = list(sent) + stored_seconds
    start, end = (min(bounds), max(bounds)) if bounds else (0, 0)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    xs = np.arange(start, end + 1)
    if sent:
        ax.plot(xs - start, [sent.get(int(x), 0) for x in xs], label="publishes")
    if len(stored_at_s):
        ax.plot(xs - start, per_second(stored_at_s, start, end), label="stored")
    for began, back, label in faults:
        ax.axvspan(began - start, max(back, began + 0.5) - start, color="tab:red", alpha=0.15)
        ax.annotate(label, (began - start, ax.get_ylim()[1] * 0.92), fontsize=7, rotation=90, va="top")
    ax.set_title(f"{title}: published and stored per second".lstrip(": "), fontsize=10)
    ax.set_xlabel("time since the first send (s)")
    ax.set_ylabel("messages per second (msg/s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: the fault labels sit at the top
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(path: Path, latency_ms: np.ndarray, marks: dict[str, float], title: str = "") -> None:
    """Histogram and CDF on a log axis: a 60 ms median and a 14 s tail are both readable on one."""
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(10, 3.5))
    positive = latency_ms[latency_ms > 0]
    if len(positive):
        low, high = float(positive.min()), float(positive.max())
        hist.hist(positive, bins=np.geomspace(low, max(high, low * 1.01), 60))
        values = np.sort(positive)
        cdf.plot(values, np.arange(1, len(values) + 1) / len(values))
        for ax in (hist, cdf):
            ax.set_xscale("log")
    for name, value in marks.items():
        if value <= 0:
            continue
        for ax in (hist, cdf):
            ax.axvline(value, linestyle="--", linewidth=0.8)
        cdf.annotate(f"{name} {value:.0f} ms", (value, 0.05 + 0.3 * list(marks).index(name)), fontsize=8)
    fig.suptitle(f"{title}: end-to-end latency, device timestamp to stored".lstrip(": "), fontsize=10)
    hist.set_xlabel("latency (ms, log scale)")
    hist.set_ylabel("messages (count)")
    cdf.set_xlabel("latency (ms, log scale)")
    cdf.set_ylabel("fraction of messages (0-1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_hops(path: Path, hops: dict[str, dict[str, float]], title: str = "") -> None:
    """Per percentile, a bar stacked by hop (each hop's own percentile: they need not add up to the
    end-to-end one); the broker's acknowledgement, seen by the simulator, is a bar of its own."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    marks = ("p50", "p95", "p99")
    left = np.zeros(len(marks))
    for hop in (*HOPS, ARCHIVE_HOP):
        widths = np.array([hops.get(hop, {}).get(m, 0.0) for m in marks])
        ax.barh(marks, widths, left=left, label=hop)
        left += widths
    ack = [hops.get(ACK_HOP, {}).get(m, 0.0) for m in marks]
    ax.barh([f"{m} ack" for m in marks], ack, color="grey", label=ACK_HOP)
    ax.set_xlabel("milliseconds")
    ax.set_title(f"{title}: where the latency goes, per hop".lstrip(": "), fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_lag(path: Path, stored_at_s: np.ndarray, latency_ms: np.ndarray, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if len(stored_at_s):
        start = stored_at_s.min()
        seconds = (stored_at_s - start).astype(int)
        worst = np.full(seconds.max() + 1, -np.inf)
        np.maximum.at(worst, seconds, latency_ms)
        # a second in which nothing was stored has no lag to show: a gap, not a zero
        worst[np.isinf(worst)] = np.nan
        ax.plot(np.arange(len(worst)), worst / 1000)
    ax.set_title(f"{title}: worst lag per second".lstrip(": "), fontsize=10)
    ax.set_xlabel("time since the first store (s)")
    ax.set_ylabel("worst lag in that second (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
