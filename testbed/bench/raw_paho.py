"""The raw paho client, driven by hand: the yardstick of the simulator's own benchmark.

N paho clients on one selector loop publish one fixed payload at a fixed total rate, with nothing
else per message: no device model, no signature, no JSON, no bookkeeping. What the fleet spends per
message above this is what the simulator adds (run in a process of its own, so its CPU is its own).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import selectors
import time
import warnings
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CONNECT_WAIT_S = 60.0
DRAIN_WAIT_S = 10.0
MISC_INTERVAL_S = 1.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _drive(port: int, connections: int, rate: float, qos: int, duration_s: float, payload: bytes) -> dict[str, Any]:
    cpu_before = _cpu_s()  # connection set-up included, as in the fleet's figure
    acked = [0]
    selector = selectors.DefaultSelector()
    clients = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # version 1 callbacks: the cheapest, as the fleet's
        for n in range(connections):
            client = mqtt.Client(CallbackAPIVersion.VERSION1, client_id=f"raw-{n}", protocol=mqtt.MQTTv311)
            client.max_inflight_messages_set(0)
            client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
            client.connect("127.0.0.1", port, keepalive=60)
            sock = client.socket()
            if sock is None:
                raise RuntimeError(f"raw-{n} has no socket after its connect")
            selector.register(sock, selectors.EVENT_READ, client)
            clients.append(client)
    deadline = time.monotonic() + CONNECT_WAIT_S
    while not all(c.is_connected() for c in clients) and time.monotonic() < deadline:
        for key, _ in selector.select(0.05):
            key.data.loop_read()
        for client in clients:
            client.loop_write()
    started = time.monotonic()
    sent, turn, next_misc = 0, 0, started + MISC_INTERVAL_S
    end = started + duration_s
    while (now := time.monotonic()) < end:
        due = int((now - started) * rate) - sent
        for _ in range(due):
            client = clients[turn]
            client.publish("sensors/raw/telemetry", payload, qos=qos)
            client.loop_write()
            turn = (turn + 1) % connections
        sent += max(due, 0)
        for key, _ in selector.select(min(0.001, max(0.0, end - now))):
            key.data.loop_read()
        if now >= next_misc:
            next_misc = now + MISC_INTERVAL_S
            for client in clients:
                client.loop_misc()
    drain_until = time.monotonic() + (DRAIN_WAIT_S if qos else 0.0)
    while acked[0] < sent and time.monotonic() < drain_until:
        for key, _ in selector.select(0.01):
            key.data.loop_read()
    cpu_s = _cpu_s() - cpu_before
    for client in clients:
        client.disconnect()
    return {
        "sent": sent,
        "acked": acked[0],
        "cpu_s": round(cpu_s, 3),
        "cpu_us_per_msg": round(cpu_s / max(sent, 1) * 1e6, 1),
    }


def _child(queue: Any, *args: Any) -> None:
    queue.put(_drive(*args))


def raw_paho(
    port: int, connections: int, rate: float, qos: int, duration_s: float, payload_bytes: int
) -> dict[str, Any]:
    """Drive `connections` raw paho clients at `rate` msg/s in total for `duration_s`, in a process of
    its own; what it sent, what was acknowledged (at QoS 0: written) and its CPU per message."""
    context = mp.get_context("fork")
    queue = context.Queue()
    payload = b"x" * payload_bytes
    process = context.Process(target=_child, args=(queue, port, connections, rate, qos, duration_s, payload))
    process.start()
    try:
        result: dict[str, Any] = queue.get(timeout=CONNECT_WAIT_S + duration_s + DRAIN_WAIT_S + 30)
    finally:
        process.join(timeout=30)
    return result
