"""The simulator's `run` and `replay` against a broker that is not the testbed's: a Mosquitto with one
login for the fleet, a plain and a TLS listener (server certificate only), a topic layout of its own,
and a pipeline that does not check signatures. Driven through the CLI, as a user runs it."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingress.broker import password_entry
from testbed.lifecycle.backends.local_ingress import mosquitto_binary
from testbed.lifecycle.ports import LOOPBACK, free_port, wait_for_port
from testbed.paths import ROOT
from tests.e2e.pki import TestCA
from tests.e2e.test_simulator_broker import Subscriber

pytestmark = pytest.mark.e2e
FLEET_LOGIN = ("fleet", "s3cret-fleet")
FLEET = "devices:\n  - {type: environmental, count: 4, interval_s: 0.5, id_prefix: team}\n"


@dataclass(frozen=True)
class TeamBroker:
    plain_port: int
    tls_port: int
    monitor_port: int  # anonymous, for the test's subscriber (a password may not go on its command line)
    ca_file: Path
    password_file: Path  # the fleet's password, as the user keeps it


@pytest.fixture(scope="module")
def team_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamBroker]:
    folder = tmp_path_factory.mktemp("team-broker")
    ca = TestCA(folder / "pki")
    cert, key = ca.issue("broker", server=True)
    (folder / "passwords").write_text(password_entry(*FLEET_LOGIN) + "\n")
    (folder / "fleet-password").write_text(f"{FLEET_LOGIN[1]}\n")
    plain, tls, monitor = free_port(), free_port(), free_port()
    login = f"allow_anonymous false\npassword_file {folder / 'passwords'}\n"
    (folder / "mosquitto.conf").write_text(
        # run as this user: mosquitto started as root would switch to `mosquitto`, who cannot read tmp_path
        f"user {getpass.getuser()}\nper_listener_settings true\n"
        f"listener {plain} {LOOPBACK}\n{login}"
        f"listener {tls} {LOOPBACK}\n{login}cafile {ca.ca_file}\ncertfile {cert}\nkeyfile {key}\n"
        f"listener {monitor} {LOOPBACK}\nallow_anonymous true\n"
    )
    with open(folder / "log", "w") as log:
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(folder / "mosquitto.conf")], stdout=log, stderr=log)
    try:
        assert all(wait_for_port(p, 10) for p in (plain, tls, monitor)), (folder / "log").read_text()
        yield TeamBroker(plain, tls, monitor, ca.ca_file, folder / "fleet-password")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def subscribe(team_broker: TeamBroker, tmp_path: Path) -> Iterator[Callable[[str], Subscriber]]:
    """A subscriber on the broker's monitoring port, ended at teardown even when the test fails early."""
    made: list[Subscriber] = []

    def start(topic: str) -> Subscriber:
        made.append(Subscriber(team_broker.monitor_port, tmp_path / f"seen-{len(made)}.txt", topic))
        return made[-1]

    yield start
    for subscriber in made:
        if subscriber.proc.poll() is None:
            subscriber.proc.terminate()
            subscriber.proc.wait(timeout=5)


def simulator(*args: str, signing_key: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SIMULATOR_SIGNING_KEY"}
    if signing_key is not None:
        env["SIMULATOR_SIGNING_KEY"] = signing_key
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def login(broker: TeamBroker) -> list[str]:
    return ["--username", "fleet", "--password-file", str(broker.password_file)]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_run_publishes_unsigned_to_its_own_topics_with_one_login(
    team_broker: TeamBroker, subscribe: Callable[[str], Subscriber], tmp_path: Path, tls: bool
) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    port = team_broker.tls_port if tls else team_broker.plain_port
    secure = ["--tls", "--ca-file", str(team_broker.ca_file)] if tls else []
    subscriber = subscribe("plant/+/up")
    result = simulator(
        "run", "--fleet", str(tmp_path / "fleet.yaml"), "--duration", "2", "--seed", "4",
        "--broker", f"{LOOPBACK}:{port}", *login(team_broker), *secure,
        "--topic", "plant/{device_id}/up", "--no-sign", "--summary", str(tmp_path / "summary.json"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    seen = subscriber.stop()
    assert summary["failed"] == 0 and summary["acknowledged"] == summary["publishes"] >= 12
    assert len(seen) == summary["acknowledged"], "every acknowledged message reached the broker's subscriber"
    assert {topic for topic, _ in seen} == {f"plant/team-{n:05d}/up" for n in range(4)}
    payloads = [json.loads(body) for _, body in seen]
    assert all("sig" not in p and p["device_id"] in topic for (topic, _), p in zip(seen, payloads, strict=True))


def test_a_payload_hook_sends_the_teams_own_wire_format(
    team_broker: TeamBroker, subscribe: Callable[[str], Subscriber], tmp_path: Path
) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    (tmp_path / "their_schema.py").write_text(
        "def to_wire(message):\n"
        "    reading = message['readings']['temperature']\n"
        "    return {'id': message['device_id'], 'at': message['ts'], 'celsius': reading['value']}\n"
    )
    subscriber = subscribe("sensors/+/telemetry")
    result = simulator(
        "run", "--fleet", "fleet.yaml", "--duration", "2", "--broker", f"{LOOPBACK}:{team_broker.plain_port}",
        *login(team_broker), "--payload-hook", "their_schema:to_wire", "--summary", "summary.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = subscriber.stop()
    assert len(seen) == json.loads((tmp_path / "summary.json").read_text())["acknowledged"] >= 12
    assert all(set(json.loads(body)) == {"id", "at", "celsius"} for _, body in seen), seen[:2]

    for spec, message in (("nosuch_module:f", "No module named 'nosuch_module'"), ("their_schema", "module:function")):
        refused = simulator(
            "run", "--fleet", "fleet.yaml", "--broker", f"{LOOPBACK}:1", "--payload-hook", spec, cwd=tmp_path
        )
        assert refused.returncode != 0 and message in refused.stderr and "Traceback" not in refused.stderr


def test_replay_takes_the_same_options(
    team_broker: TeamBroker, subscribe: Callable[[str], Subscriber], tmp_path: Path
) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    trace = tmp_path / "trace.jsonl"
    made = simulator(
        "run", "--fleet", str(tmp_path / "fleet.yaml"), "--duration", "1", "--dry-run", str(trace), signing_key="k"
    )
    assert made.returncode == 0, made.stderr[-2000:]
    subscriber = subscribe("replayed/#")
    result = simulator(
        "replay", str(trace), "--speed", "4", "--broker", f"{LOOPBACK}:{team_broker.tls_port}", *login(team_broker),
        "--tls", "--ca-file", str(team_broker.ca_file), "--topic", "replayed/{device_id}", "--no-sign",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = subscriber.stop()
    assert len(seen) == len(trace.read_text().splitlines()) and all("sig" not in json.loads(b) for _, b in seen)


def test_a_wrong_password_or_an_unknown_ca_fails_every_message_and_says_so(
    team_broker: TeamBroker, tmp_path: Path
) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    (tmp_path / "wrong").write_text("not-the-password\n")
    other_ca = TestCA(tmp_path / "other", name="another CA").ca_file
    for port, extra in (
        (team_broker.plain_port, ["--username", "fleet", "--password-file", str(tmp_path / "wrong")]),
        (team_broker.tls_port, [*login(team_broker), "--tls", "--ca-file", str(other_ca)]),
    ):
        result = simulator(
            "run", "--fleet", str(tmp_path / "fleet.yaml"), "--duration", "1", "--broker", f"{LOOPBACK}:{port}",
            *extra, "--no-sign", "--summary", str(tmp_path / "summary.json"), "--drain-timeout", "2",
        )  # fmt: skip
        assert result.returncode == 1 and "failed" in result.stderr, extra
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["acknowledged"] == 0 and summary["failed"] == summary["publishes"] > 0, extra
        assert summary["refused_connections"] > 0 or summary["failed_by_cause"], extra


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--username", "fleet"], "--username and --password-file go together"),
        (["--broker-secret-file", "x", "--username", "u", "--password-file", "p"], "different ways to log in"),
        (["--ca-file", "ca.pem"], "add one of them"),
        (["--topic", "plant/+/up", "--no-sign"], "is a filter or a reserved topic"),
        (["--topic", "plant/{site}/up", "--no-sign"], "the only placeholder is {device_id}"),
        (["--topic", "plant/{device_id}+", "--no-sign"], "is a filter or a reserved topic"),
        (["--topic", "a/#x", "--no-sign"], "is a filter or a reserved topic"),
        (["--topic", "a/{", "--no-sign"], "the only placeholder is {device_id}"),
        (["--topic", "{device_id:>{w}}", "--no-sign"], "the only placeholder is {device_id}"),
        (["--basic-ingest", "a/b", "--no-sign"], "is not a rule name"),
        (["--username", "u", "--password-file", "/nonexistent/pw", "--no-sign"], "cannot read the password file"),
        (["--drain-timeout", "-1", "--no-sign"], "is not a number of seconds"),
        (["--drain-timeout", "nan", "--no-sign"], "is not a number of seconds"),
    ],
)
def test_contradictory_or_unusable_connection_options_are_refused_before_connecting(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    result = simulator("run", "--fleet", str(tmp_path / "fleet.yaml"), "--broker", f"{LOOPBACK}:1", *args)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
