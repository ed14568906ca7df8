"""The run summary: what was sent, acknowledged and failed, per device and message id, with faults.
Its totals are counts of toolkit/counts.py, under the same names."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

import numpy as np

from simulator.devices import Emitted, Fault

DUPLICATE = Fault.DUPLICATE.value


class DeviceSummary(TypedDict):
    """One device's part of a run summary: msg_ids published, acknowledged, failed, and their faults."""

    publishes: int
    acked: list[int]
    acked_due: list[float]
    failed: list[int]
    faults: dict[str, list[str]]  # msg_id (as JSON keys are text) -> the fault tags it carried
    resends: NotRequired[int]  # publishes sent again after no PUBACK within the ack timeout


class RunSummary(TypedDict):
    """What a run sent and what came of it: the contract between the simulator and whatever
    reconciles, reports or benchmarks a run (also its JSON output)."""

    publishes: int
    duplicate_sends: int
    resends: NotRequired[int]  # the same publish again, after no PUBACK within the ack timeout
    acknowledged: int  # distinct messages
    failed: int  # distinct messages never acknowledged
    failed_by_cause: dict[str, int]  # per failed publish
    reconnects: int
    refused_connections: int
    send_lateness_ms: dict[str, float]
    send_span_s: float
    sent_per_s: dict[str, int]
    ack_latency_ms: dict[str, float]
    # how many publishes had each payload size in bytes (what AWS meters a message by)
    payload_sizes: dict[str, int]
    per_device: dict[str, DeviceSummary]


class RawRunSummary(RunSummary, total=False):
    """A worker's summary with the samples a merge needs (`Recorder.merge`)."""

    first_send: float
    last_send: float
    lateness_s: list[float]
    ack_latency_s: list[float]


@dataclass
class DeviceRecord:
    publishes: int = 0
    acked: list[int] = field(default_factory=list)
    acked_due: list[float] = field(default_factory=list)  # when each acknowledged message was due (epoch s)
    failed: list[int] = field(default_factory=list)
    faults: dict[int, list[str]] = field(default_factory=dict)
    resends: int = 0
    # distinct ids acknowledged, and failed without (yet) an acknowledgement
    acked_ids: set[int] = field(default_factory=set)
    failed_ids: set[int] = field(default_factory=set)

    def ack(self, msg_id: int) -> tuple[bool, bool]:
        """(first acknowledgement of this message, it had been counted failed)."""
        self.acked.append(msg_id)
        first = msg_id not in self.acked_ids
        if first:
            self.acked_ids.add(msg_id)
        was_failed = msg_id in self.failed_ids
        if was_failed:
            self.failed_ids.discard(msg_id)
        return first, was_failed

    def fail(self, msg_id: int) -> bool:
        """True when this makes the message failed (it was neither acknowledged nor failed before)."""
        self.failed.append(msg_id)
        if msg_id in self.acked_ids or msg_id in self.failed_ids:
            return False
        self.failed_ids.add(msg_id)
        return True


@dataclass
class Recorder:
    """Collects every publish, ack and failure; lateness of each send in seconds."""

    devices: dict[str, DeviceRecord] = field(default_factory=lambda: defaultdict(DeviceRecord))
    lateness_s: list[float] = field(default_factory=list)
    ack_latency_s: list[float] = field(default_factory=list)
    publishes: int = 0
    duplicate_sends: int = 0
    resends: int = 0
    # distinct messages acknowledged, and failed and never acknowledged, so far (kept as they change:
    # the live line reads them four times a second)
    acknowledged: int = 0
    failed_messages: int = 0
    first_send: float = float("inf")
    sent_per_s: dict[int, int] = field(default_factory=dict)
    last_send: float = float("-inf")
    failed_by_cause: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    refused_connections: int = 0
    payload_sizes: Counter[int] = field(default_factory=Counter)

    def generated(self, emitted: Emitted) -> None:
        """The device produced this publish and hands it to its client now."""
        self.noted(emitted)
        self.published(emitted)

    def noted(self, emitted: Emitted) -> None:
        """A publish the device will make (pre-generated runs note it ahead of its time)."""
        if emitted.faults:
            self.devices[emitted.device_id].faults.setdefault(emitted.msg_id, []).extend(emitted.faults)

    def published(self, emitted: Emitted) -> None:
        """Handed to the client (whether or not it ever leaves it): a publish of the run."""
        self.devices[emitted.device_id].publishes += 1
        self.publishes += 1
        self.payload_sizes[len(emitted.payload)] += 1
        if DUPLICATE in emitted.faults:
            self.duplicate_sends += 1

    def resent(self, emitted: Emitted) -> None:
        """Sent again after no PUBACK within the ack timeout: the same publish, counted apart."""
        self.devices[emitted.device_id].resends += 1
        self.resends += 1

    def sent(self, emitted: Emitted, at: float) -> None:
        """Handed to the MQTT client at `at`: how late against its due time."""
        self.lateness_s.append(at - emitted.due)
        second = int(at)
        self.sent_per_s[second] = self.sent_per_s.get(second, 0) + 1
        self.first_send = min(self.first_send, at)
        self.last_send = max(self.last_send, at)

    def acked(self, emitted: Emitted, at: float) -> None:
        record = self.devices[emitted.device_id]
        first, was_failed = record.ack(emitted.msg_id)
        self.acknowledged += first
        self.failed_messages -= was_failed
        record.acked_due.append(round(emitted.due, 2))
        self.ack_latency_s.append(at - emitted.due)

    def failed(self, emitted: Emitted, cause: str) -> None:
        self.failed_messages += self.devices[emitted.device_id].fail(emitted.msg_id)
        self.failed_by_cause[cause] += 1

    def connections(self, reconnects: int, refused_connections: int) -> None:
        """What the connections went through: reconnects after a drop, refused or failed attempts."""
        self.reconnects += reconnects
        self.refused_connections += refused_connections

    def merge(self, other: RawRunSummary) -> None:
        """Fold in a worker's `to_dict(raw=True)` output."""
        for device_id, rec in other["per_device"].items():
            mine = self.devices[device_id]
            mine.publishes += rec["publishes"]
            mine.acked += rec["acked"]
            mine.acked_due += rec["acked_due"]
            mine.failed += rec["failed"]
            mine.resends += rec.get("resends", 0)
            mine.acked_ids.update(rec["acked"])
            mine.failed_ids = (mine.failed_ids | set(rec["failed"])) - mine.acked_ids
            for msg_id, tags in rec["faults"].items():
                mine.faults.setdefault(int(msg_id), []).extend(tags)
        self.publishes += other["publishes"]
        self.duplicate_sends += other["duplicate_sends"]
        self.resends += other.get("resends", 0)
        if "first_send" in other:  # a worker that sent nothing has no first or last send
            self.first_send = min(self.first_send, other["first_send"])
            self.last_send = max(self.last_send, other["last_send"])
        self.lateness_s += other["lateness_s"]
        for second, count in other["sent_per_s"].items():
            self.sent_per_s[int(second)] = self.sent_per_s.get(int(second), 0) + count
        self.ack_latency_s += other["ack_latency_s"]
        self.failed_by_cause.update(other["failed_by_cause"])
        self.reconnects += other["reconnects"]
        self.refused_connections += other["refused_connections"]
        self.payload_sizes.update({int(size): n for size, n in other.get("payload_sizes", {}).items()})
        self.acknowledged = sum(len(r.acked_ids) for r in self.devices.values())
        self.failed_messages = sum(len(r.failed_ids) for r in self.devices.values())

    def to_dict(self, raw: bool = False) -> RawRunSummary:
        out: RawRunSummary = {
            "publishes": self.publishes,
            "duplicate_sends": self.duplicate_sends,
            "resends": self.resends,
            "acknowledged": self.acknowledged,
            "failed": self.failed_messages,
            "failed_by_cause": dict(sorted(self.failed_by_cause.items())),
            "reconnects": self.reconnects,
            "refused_connections": self.refused_connections,
            "send_lateness_ms": percentiles(self.lateness_s),
            # from the first send to the last: a generator that falls behind stretches it
            "send_span_s": round(self.last_send - self.first_send, 3) if self.lateness_s else 0.0,
            "sent_per_s": {str(k): v for k, v in sorted(self.sent_per_s.items())},
            "ack_latency_ms": percentiles(self.ack_latency_s),
            "payload_sizes": {str(size): n for size, n in sorted(self.payload_sizes.items())},
            "per_device": {
                device_id: {
                    "publishes": r.publishes,
                    "acked": r.acked,
                    "acked_due": r.acked_due,
                    "failed": r.failed,
                    "faults": {str(k): v for k, v in r.faults.items()},
                    "resends": r.resends,
                }
                for device_id, r in sorted(self.devices.items())
            },
        }
        if raw:
            if self.lateness_s:  # none when nothing was sent (not infinities, which JSON has not)
                out["first_send"], out["last_send"] = self.first_send, self.last_send
            out["lateness_s"] = self.lateness_s
            out["ack_latency_s"] = self.ack_latency_s
        return out


def typical_size(summary: RunSummary) -> int:
    """The payload size the run sent most often (bytes), for a yardstick to send the same."""
    sizes = summary["payload_sizes"]
    return int(max(sizes.items(), key=lambda kv: kv[1])[0]) if sizes else 300


def acked_ids(summary: RunSummary) -> set[tuple[str, int]]:
    """(device_id, msg_id) of every message the broker acknowledged, from a run summary."""
    return {(device_id, msg_id) for device_id, rec in summary["per_device"].items() for msg_id in rec["acked"]}


def percentiles(samples_s: list[float]) -> dict[str, float]:
    if not samples_s:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    values = np.asarray(samples_s) * 1000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(values.max()), 2),
    }
