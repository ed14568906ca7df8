"""Replay a recorded trace (JSONL from a dry run, or CSV) with timestamps shifted to now.

Each record's payload is re-timed (ts moved by the same offset, keeping the gaps between
messages) and re-signed, then published when due, optionally faster or slower.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from simulator.connection import DEFAULT_TOPIC, TlsContexts
from simulator.devices import Emitted
from simulator.exceptions import SimulatorError
from simulator.summary import Recorder, RunSummary
from simulator.transport import MqttFleet
from telemetry.schema import canonical_bytes, signed_payload
from telemetry.topics import DeviceTopic

TICK_S = 0.01


class TraceError(SimulatorError):
    """The trace file cannot be replayed; the message names the line."""


def read_trace(path: Path) -> Iterator[dict[str, Any]]:
    """Records with at least `payload` (a JSON message); CSV columns become the message fields."""
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            for line_no, row in enumerate(csv.DictReader(handle), start=2):
                yield {"payload": _from_csv(row, path, line_no)}
        return
    with path.open() as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TraceError(f"{path}:{line_no}: not JSON ({exc.msg})") from None


def _from_csv(row: dict[str, str], path: Path, line_no: int) -> str:
    """CSV: device_id, msg_id, ts, device_type, firmware, then one `<sensor>:<unit>` column per reading."""
    try:
        readings = {
            k.split(":")[0]: {"value": _number(v), "unit": k.split(":")[1]}
            for k, v in row.items()
            if ":" in k and v != ""
        }
        return json.dumps(
            {
                "schema_version": 1,
                "device_id": row["device_id"],
                "msg_id": int(row["msg_id"]),
                "ts": int(row["ts"]),
                "device_type": row["device_type"],
                "firmware": row["firmware"],
                "readings": readings,
            }
        )
    except (KeyError, ValueError, IndexError) as exc:
        raise TraceError(f"{path}:{line_no}: {exc!r}") from None


def _number(text: str) -> float | bool:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    value = float(text)
    return int(value) if value.is_integer() else value


def _when(record: dict[str, Any]) -> float:
    """Seconds on the trace's own clock: the dry run's `due`, else the message's device time."""
    if "due" in record:
        return float(record["due"])
    return float(json.loads(record["payload"])["ts"]) / 1000


def retimed(records: list[dict[str, Any]], key: bytes | None, now_s: float, speed: float) -> list[Emitted]:
    """Shift every message so the first one is due now, gaps divided by `speed`, and re-sign it (with
    no key, it goes unsigned).

    A payload that is not a JSON message (a recorded malformed one) is sent verbatim.
    """
    first = min(_when(r) for r in records)
    out = []
    for record in records:
        due = now_s + (_when(record) - first) / speed
        payload = record["payload"]
        try:
            message = json.loads(payload)
            message["ts"] = int(due * 1000)
            message.pop("sig", None)
            body = signed_payload(message, key) if key is not None else canonical_bytes(message)
            device_id, msg_id = message["device_id"], int(message["msg_id"])
        except (ValueError, TypeError, KeyError):
            body, device_id, msg_id = payload.encode(), record["device_id"], int(record.get("msg_id", -1))
        # a message the trace holds twice (a duplicate send) is replayed twice, and counted as such
        tags = record.get("faults")
        kept = tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()
        out.append(Emitted(device_id, msg_id, body, due, ("replay", *kept)))
    return sorted(out, key=lambda e: e.due)


def replay(
    path: Path,
    key: bytes | None,
    host: str,
    port: int,
    qos: int = 1,
    speed: float = 1.0,
    credentials: Callable[[str], tuple[str, str]] | None = None,
    tls: TlsContexts | None = None,
    topic: DeviceTopic = DEFAULT_TOPIC,
) -> RunSummary:
    """Publish the trace in real time (scaled by `speed`); returns the run summary.

    `credentials`: each device's username and password, for a broker that wants them; `tls`, each
    device's TLS context; `topic`, each device's topic ({device_id} replaced).
    """
    records = list(read_trace(path))
    if not records:
        raise TraceError(f"{path} holds no messages")
    recorder = Recorder()
    fleet = MqttFleet(
        host,
        port,
        qos,
        credentials=credentials,
        on_send=recorder.sent,
        on_ack=recorder.acked,
        on_fail=recorder.failed,
        tls=tls,
        topic=topic,
    )
    pending = retimed(records, key, time.time() + 1.0, speed)
    for device_id in {e.device_id for e in pending}:
        fleet.connect(device_id)
    index = 0
    while index < len(pending) or fleet.in_flight():
        now = time.time()
        while index < len(pending) and pending[index].due <= now:
            recorder.generated(pending[index])
            fleet.send(pending[index])
            index += 1
        fleet.poll(TICK_S)
        if index == len(pending) and now > pending[-1].due + 30:
            break
    fleet.close()
    recorder.connections(fleet.counters.reconnects, fleet.counters.connect_errors)
    return recorder.to_dict()
