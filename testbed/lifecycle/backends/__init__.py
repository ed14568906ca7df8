"""Targets the stack runs on, one class each, behind the `Backend` interface."""

from __future__ import annotations

from testbed.lifecycle.backends.aws import AwsBackend
from testbed.lifecycle.backends.base import Backend, BackendError
from testbed.lifecycle.backends.compose import ComposeBackend, LocalStackBackend, MinistackDockerBackend
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.backends.external import ExternalBackend
from testbed.lifecycle.backends.localstack_host import LocalStackHostBackend

BACKENDS: dict[str, type[Backend]] = {
    "embedded": EmbeddedBackend,
    "external": ExternalBackend,
    "localstack": LocalStackBackend,
    "localstack-host": LocalStackHostBackend,
    "ministack-docker": MinistackDockerBackend,
    "aws": AwsBackend,
}


def get_backend(name: str) -> Backend:
    """The backend called `name`, configured from the environment."""
    try:
        return BACKENDS[name].from_env()
    except KeyError:
        raise BackendError(f"unknown BACKEND {name!r}; choose one of {sorted(BACKENDS)}") from None


__all__ = [
    "BACKENDS",
    "AwsBackend",
    "Backend",
    "BackendError",
    "ComposeBackend",
    "EmbeddedBackend",
    "ExternalBackend",
    "LocalStackBackend",
    "LocalStackHostBackend",
    "MinistackDockerBackend",
    "get_backend",
]
