"""Targets the stack runs on, one class each, behind the `Backend` interface."""

from __future__ import annotations

from testbed.lifecycle.backends.aws import AwsBackend
from testbed.lifecycle.backends.base import Backend, BackendError
from testbed.lifecycle.backends.compose import ComposeBackend, LocalStackBackend, MinistackDockerBackend
from testbed.lifecycle.backends.embedded import EmbeddedBackend
from testbed.lifecycle.backends.external import ExternalBackend
from testbed.lifecycle.backends.localstack_host import LocalStackHostBackend
from testbed.lifecycle.runners import RunnerError, localstack_runner

BACKENDS: dict[str, type[Backend]] = {
    "embedded": EmbeddedBackend,
    "external": ExternalBackend,
    "localstack": LocalStackBackend,
    "ministack-docker": MinistackDockerBackend,
    "aws": AwsBackend,
}


def backend_class(name: str) -> type[Backend]:
    """The class behind `name`; for `localstack`, the runner LOCALSTACK_RUNNER picks (Docker when an
    engine answers, else the host process)."""
    if name not in BACKENDS:
        raise BackendError(f"unknown BACKEND {name!r}; choose one of {sorted(BACKENDS)}")
    if name == "localstack":
        try:
            runner = localstack_runner()
        except RunnerError as exc:
            raise BackendError(str(exc)) from None
        return LocalStackHostBackend if runner == "host" else LocalStackBackend
    return BACKENDS[name]


def get_backend(name: str) -> Backend:
    """The backend called `name`, configured from the environment."""
    return backend_class(name).from_env()


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
    "backend_class",
    "get_backend",
]
