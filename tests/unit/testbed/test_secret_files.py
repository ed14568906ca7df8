"""The checks behind "no secret on disk": every encoding of a secret is found outside the allow-list,
modes are checked and mended, and a state written before write-only secrets is recognised and its
key retired (moto's Secrets Manager keeps version stages as AWS does)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from testbed.lifecycle.secrets import (
    LeakedVersion,
    SecretFile,
    SecretsError,
    leaked_secrets,
    leaked_versions,
    make_private,
    private_folder,
    remember,
    retire,
    secret_forms,
    unsafe_modes,
)

ALLOWED = (SecretFile("nested/*.key", "a test key"),)


def test_every_encoding_of_a_secret_is_found_outside_the_allow_list(tmp_path: Path) -> None:
    secret = b"s3cr3t-value-0123456789"
    forms = secret_forms(secret)
    for index, form in enumerate(forms):
        (tmp_path / f"leak-{index}.txt").write_bytes(b"prefix " + form + b" suffix")
    (tmp_path / "clean.txt").write_text("nothing here")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "device.key").write_bytes(secret)
    leaks = leaked_secrets([tmp_path], {"it": secret}, ALLOWED)
    assert sorted(path.name for path, _ in leaks) == sorted(f"leak-{i}.txt" for i in range(len(forms)))


def test_a_secret_inside_a_longer_base64_text_is_found_at_every_alignment(tmp_path: Path) -> None:
    secret = b"a-signing-key-of-some-length-0123456789"
    for offset in range(3):
        (tmp_path / f"b64-{offset}.txt").write_bytes(base64.b64encode(b"x" * offset + secret + b"tail"))
    assert len(leaked_secrets([tmp_path], {"it": secret})) == 3


def test_modes_that_let_others_read_a_secret_are_named_and_mended(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "nested").mkdir(parents=True)
    key = state / "nested" / "device.key"
    key.write_text("k")
    for path, mode in ((state, 0o755), (state / "nested", 0o755), (key, 0o644)):
        os.chmod(path, mode)
    assert unsafe_modes(state, ALLOWED) == sorted(
        [f"{key} is 0o644, not 0600", f"{state} is 0o755, not 0700", f"{state / 'nested'} is 0o755, not 0700"]
    )
    make_private(state, ALLOWED)
    assert unsafe_modes(state, ALLOWED) == []
    assert key.stat().st_mode & 0o777 == 0o600 and state.stat().st_mode & 0o777 == 0o700


LEGACY_STATE = {
    "resources": [
        {"mode": "data", "type": "aws_secretsmanager_random_password", "name": "signing_key", "instances": []},
        {
            "mode": "managed",
            "type": "aws_secretsmanager_secret_version",
            "name": "signing_key",
            "instances": [{"attributes": {"secret_id": "arn:s", "version_id": "v1", "secret_string": "old-key"}}],
        },
    ]
}


def test_a_state_that_holds_a_secret_value_is_recognised_and_a_write_only_one_is_not() -> None:
    assert leaked_versions(LEGACY_STATE) == [
        LeakedVersion("aws_secretsmanager_secret_version.signing_key", "arn:s", "v1")
    ]
    write_only = {"secret_id": "arn:s", "version_id": "v2", "secret_string": "", "secret_string_wo_version": 1}
    resource = {**LEGACY_STATE["resources"][1], "instances": [{"attributes": write_only}]}  # type: ignore[dict-item]
    assert leaked_versions({"resources": [resource]}) == []
    assert leaked_versions({}) == []
    other = {**LEGACY_STATE["resources"][1], "name": "their_own"}  # type: ignore[dict-item]
    assert leaked_versions({"resources": [other]}) == [], "a user's own secrets are theirs to rotate"


def test_leaked_versions_are_remembered_until_retired(tmp_path: Path) -> None:
    """An apply that fails after replacing the version leaves a clean state: the next `up` still
    retires what the state held."""
    pending = tmp_path / "leaked-keys.json"
    first = leaked_versions(LEGACY_STATE)
    assert remember(pending, first) == first
    assert remember(pending, []) == first, "the next up, whose state no longer holds the key"
    assert remember(tmp_path / "none.json", []) == [] and not (tmp_path / "none.json").exists()


@mock_aws
def test_the_leaked_key_is_retired_once_a_new_one_is_current() -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="k", SecretString="old-key")["ARN"]
    old = client.list_secret_version_ids(SecretId=arn)["Versions"][0]["VersionId"]
    leaked = [LeakedVersion("aws_secretsmanager_secret_version.signing_key", arn, old)]
    with pytest.raises(SecretsError, match="is still the current key"):
        retire(client, leaked)  # retiring it would leave no key, keeping it keeps the leak
    client.put_secret_value(SecretId=arn, SecretString="new-key")
    assert client.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"] == "old-key"
    assert retire(client, leaked) == [f"aws_secretsmanager_secret_version.signing_key ({old})"]
    stages = {
        v["VersionId"]: v.get("VersionStages", []) for v in client.list_secret_version_ids(SecretId=arn)["Versions"]
    }
    assert stages.get(old, []) == []
    assert client.get_secret_value(SecretId=arn)["SecretString"] == "new-key"


def test_a_private_folder_and_every_folder_made_for_it_are_0700(tmp_path: Path) -> None:
    """mkdir(parents=True) makes the parents 0755: a key folder under them could be listed by others."""
    old = os.umask(0o022)
    try:
        leaf = private_folder(tmp_path / "state" / "things" / "runs")
    finally:
        os.umask(old)
    (leaf / "d.key").write_bytes(b"k")
    (leaf / "d.key").chmod(0o600)
    assert [oct(p.stat().st_mode & 0o777) for p in (leaf.parent.parent, leaf.parent, leaf)] == ["0o700"] * 3
    assert unsafe_modes(tmp_path / "state", (SecretFile("things/runs/*.key", "a device key"),)) == []
