"""Unit-test fixtures: the processor's AWS resources in moto (tests/unit/moto_aws.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from processor.config import Settings
from tests.unit.moto_aws import MotoAws, MotoClients, moto_aws


@pytest.fixture(scope="session")
def moto_clients() -> MotoClients:
    """Made once: a boto3 client costs more to build than a test spends with it."""
    return MotoClients.create()


@pytest.fixture
def aws(moto_clients: MotoClients, settings: Settings) -> Iterator[MotoAws]:
    """A fresh moto account per test holding what `settings` names (a mock starts in a few ms)."""
    with moto_aws(moto_clients, settings) as account:
        yield account
