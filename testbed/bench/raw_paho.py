"""The raw paho client, driven by hand: the yardsticks of the simulator's and the bridge's costs.

N paho clients on one selector loop publish one fixed payload at a fixed total rate, with nothing
else per message: no device model, no signature, no JSON, no bookkeeping. What the fleet spends per
message above this is what the simulator adds. One paho client subscribed at QoS 1 receives such a
load and acknowledges each message, with nothing else: what the rule bridge spends above it is its
own (the rule, the batching, the invokes). Each runs in a process of its own, so its CPU is its own.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import selectors
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port

CONNECT_WAIT_S = 60.0
DRAIN_WAIT_S = 10.0
MISC_INTERVAL_S = 1.0
TOPIC = "sensors/raw/telemetry"
# the receiver's end: this long without a message once the publishers have stopped
QUIET_S = 2.0


@contextmanager
def private_broker() -> Iterator[int]:
    """A Mosquitto of our own on a free loopback port, stopped by its PID afterwards."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(
            f"listener {port} {LOOPBACK}\nallow_anonymous true\nmax_connections -1\nmax_queued_messages 100000\n"
        )
        proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            if not wait_for_port(port, 10):
                raise RuntimeError("the benchmark's mosquitto did not start")
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


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
            client.publish(TOPIC, payload, qos=qos)
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


def _receive(port: int, ready: Any, done: Any, queue: Any) -> None:
    """One client subscribed at QoS 1, driven by paho's own loop (a select and a read per packet)
    and acknowledging each message itself; CPU from the subscription on, counted until the
    publishers are done and the broker has been quiet QUIET_S."""
    received = [0]
    subscribed = [False]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-receiver", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(1000)
    client.on_message = lambda *_: received.__setitem__(0, received[0] + 1)
    client.on_subscribe = lambda *_: subscribed.__setitem__(0, True)
    client.connect("127.0.0.1", port, keepalive=60)
    client.subscribe(TOPIC, qos=1)
    deadline = time.monotonic() + CONNECT_WAIT_S
    while not subscribed[0]:
        if time.monotonic() > deadline or client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
            return  # the parent names it: nothing was ready
    cpu_before = _cpu_s()
    ready.set()
    quiet_since = time.monotonic()
    while not (done.is_set() and time.monotonic() - quiet_since > QUIET_S):
        count = received[0]
        client.loop(timeout=0.05)
        if received[0] != count:
            quiet_since = time.monotonic()
    cpu_s = _cpu_s() - cpu_before
    client.disconnect()
    queue.put({"received": received[0], "cpu_s": round(cpu_s, 3)})


def raw_receive(port: int, connections: int, rate: float, duration_s: float, payload_bytes: int) -> dict[str, Any]:
    """One raw paho subscriber receiving what `connections` raw publishers send at QoS 1 at `rate`
    msg/s for `duration_s`: what it received and its CPU per message, each side in its own process."""
    context = mp.get_context("fork")
    ready, done, queue = context.Event(), context.Event(), context.Queue()
    receiver = context.Process(target=_receive, args=(port, ready, done, queue), daemon=True)
    receiver.start()
    try:
        deadline = time.monotonic() + CONNECT_WAIT_S
        while not ready.wait(0.1):
            if not receiver.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the raw receiver did not subscribe on port {port}")
        sent = raw_paho(port, connections, rate, 1, duration_s, payload_bytes)
        done.set()
        result: dict[str, Any] = queue.get(timeout=DRAIN_WAIT_S + QUIET_S + 30)
    finally:
        done.set()
        receiver.join(timeout=30)
        if receiver.is_alive():
            receiver.terminate()
            receiver.join(timeout=5)
    return {
        "sent": sent["sent"],
        **result,
        "cpu_us_per_msg": round(result["cpu_s"] / max(result["received"], 1) * 1e6, 1),
    }
