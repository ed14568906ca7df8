"""`eval "$(bin/testbed env)"`: the shell variables that point AWS tools at the running stack.

The AWS CLI, boto3 and Terraform read `AWS_ENDPOINT_URL` (and the test credentials an emulator
accepts); LocalStack's wrappers read their own: `awslocal` takes `LOCALSTACK_HOST`, `tflocal`
takes `AWS_ENDPOINT_URL`. `TF_CLI_CONFIG_FILE` is the testbed's Terraform CLI config, so a
user's own `terraform init` finds the same provider mirror offline.
"""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

from testbed.exceptions import TestbedError
from testbed.lifecycle.backends.base import Backend
from testbed.lifecycle.terraform import write_cli_config


def exports(backend: Backend) -> dict[str, str]:
    """What to export for `backend`; on AWS only the region (credentials stay the caller's)."""
    env = dict(backend.client_env())
    endpoint = env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint)
        env["LOCALSTACK_HOST"] = f"{parts.hostname}:{parts.port}"
    env["TF_CLI_CONFIG_FILE"] = str(write_cli_config())
    return env


def shell_lines(env: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]


def dotenv_lines(env: dict[str, str]) -> list[str]:
    """NAME=value lines, as an env file takes them (GitHub's $GITHUB_ENV, docker --env-file): a value
    holding a line break would end the line early, so it is refused."""
    broken = sorted(name for name, value in env.items() if "\n" in value or "\r" in value)
    if broken:
        raise TestbedError(f"{', '.join(broken)}: a value with a line break cannot go in an env file")
    return [f"{name}={value}" for name, value in sorted(env.items())]
