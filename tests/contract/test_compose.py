"""docker-compose.yml, checked statically (these machines have no Docker engine)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from testbed.backends.localstack import DEFAULT_PORT, LocalStackBackend
from testbed.paths import ROOT

COMPOSE = ROOT / "docker-compose.yml"


def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert set(document) <= {"name", "services", "volumes", "networks"}
    return dict(document["services"])


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in services().items():
        image = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", service["image"])  # the default of ${VAR:-default}
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (name, image)


def test_localstack_is_the_last_free_tag_and_the_token_comes_from_the_environment() -> None:
    localstack = services()["localstack"]
    assert localstack["image"] == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"
    token = localstack["environment"]["LOCALSTACK_AUTH_TOKEN"]
    assert token == "${LOCALSTACK_AUTH_TOKEN:-}", "passed through, never written down"
    assert "/var/run/docker.sock:/var/run/docker.sock" in localstack["volumes"], "its Lambda runs in containers"
    assert localstack["healthcheck"]["test"][-1].endswith("/_localstack/health")


def test_ports_bind_to_loopback_only() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_backend_and_compose_agree_on_the_profile_and_port() -> None:
    backend = LocalStackBackend()
    assert backend.compose("up")[-3:] == ["--profile", "localstack", "up"]
    assert services()["localstack"]["profiles"] == ["localstack"]
    assert services()["localstack"]["ports"][0] == f"127.0.0.1:${{LOCALSTACK_PORT:-{DEFAULT_PORT}}}:4566"
