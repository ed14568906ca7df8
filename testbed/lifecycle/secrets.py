"""Which files of a stack may hold a secret, and the checks that no other file does.

The testbed writes state, logs, outputs and reports under its folders; only the files named here
(the broker's secret and password file, device private keys, the emulator's own secret store) may
hold a secret, each readable by its owner only (0600) in folders only its owner can enter (0700).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from testbed.exceptions import TestbedError

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
# the bits nobody but the owner may have on a secret file or on a folder above one
GROUP_OTHER_BITS = stat.S_IRWXG | stat.S_IRWXO
# a file larger than this is not scanned whole (only its first bytes): no state file comes near it
SCAN_LIMIT_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class SecretFile:
    """A file that may hold a secret: a pattern for its path relative to the stack's state folder
    (fnmatch: `*` crosses folders), and what it is."""

    pattern: str
    what: str

    def matches(self, relative: PurePosixPath) -> bool:
        return fnmatch.fnmatchcase(str(relative), self.pattern)


def private_folder(path: Path) -> Path:
    """`path` made 0700 with every folder created for it (mkdir's `parents=True` makes those 0755,
    and a folder on the way to a private key must not let others list it)."""
    for folder in reversed([path, *(p for p in path.parents if not p.exists())]):
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)
    return path


def make_private(state_dir: Path, allowed: Iterable[SecretFile]) -> None:
    """Make `state_dir` 0700 (created if needed), and each allow-listed file in it 0600 in 0700
    folders: a state made before these modes, or a file a server rewrote in place, is mended."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    state_dir.chmod(PRIVATE_DIR_MODE)
    allowed = tuple(allowed)
    for path in _files(state_dir):
        if _allowed(path, state_dir, allowed):
            path.chmod(PRIVATE_FILE_MODE)
            for folder in path.parents:
                if folder == state_dir:
                    break
                folder.chmod(PRIVATE_DIR_MODE)


def secret_forms(secret: bytes) -> tuple[bytes, ...]:
    """How `secret` can appear in a file: raw, hex (either case) and base64 (standard or URL-safe) at
    each of the three alignments it can take inside a longer base64 text."""
    forms = {secret, secret.hex().encode(), secret.hex().upper().encode()}
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        # drop the characters that mix in the bytes before and after the secret
        core = encoded[4 if offset else 0 : -4]
        forms |= {core, core.replace(b"+", b"-").replace(b"/", b"_")}
    return tuple(form for form in forms if len(form) >= 8)


def _files(folder: Path) -> Iterator[Path]:
    """Every regular file under `folder` (symlinks are not followed: what they name lies elsewhere)."""
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            with contextlib.suppress(OSError):
                if stat.S_ISREG(path.lstat().st_mode):
                    yield path


def _allowed(path: Path, folder: Path, allowed: Iterable[SecretFile]) -> bool:
    relative = PurePosixPath(path.relative_to(folder).as_posix())
    return any(secret_file.matches(relative) for secret_file in allowed)


def leaked_secrets(
    folders: Iterable[Path], secrets: Mapping[str, bytes], allowed: Iterable[SecretFile] = ()
) -> list[tuple[Path, str]]:
    """(file, which secret) for every file under `folders`, outside the allow-list, holding a secret."""
    allowed = tuple(allowed)
    forms = {name: secret_forms(value) for name, value in secrets.items()}
    leaks = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in _files(folder):
            if _allowed(path, folder, allowed):
                continue
            try:
                with path.open("rb") as handle:
                    content = handle.read(SCAN_LIMIT_BYTES)
            except OSError:  # removed while we walked
                continue
            leaks += [(path, name) for name, variants in forms.items() if any(v in content for v in variants)]
    return leaks


def unsafe_modes(state_dir: Path, allowed: Iterable[SecretFile]) -> list[str]:
    """What lets another local user read a secret file: the file not 0600, or a folder from
    `state_dir` down to it that others may enter."""
    allowed = tuple(allowed)
    problems = []
    for path in _files(state_dir):
        if not _allowed(path, state_dir, allowed):
            continue
        if path.stat().st_mode & GROUP_OTHER_BITS:
            problems.append(f"{path} is {oct(path.stat().st_mode & 0o777)}, not 0600")
        for folder in (state_dir, *[p for p in path.parents if state_dir in p.parents]):
            if folder.stat().st_mode & GROUP_OTHER_BITS:
                problems.append(f"{folder} is {oct(folder.stat().st_mode & 0o777)}, not 0700")
    return sorted(set(problems))


@dataclass(frozen=True)
class LeakedVersion:
    """A secret version whose value a Terraform state holds (written before write-only arguments)."""

    address: str
    secret_id: str
    version_id: str


# The shipped stack's signing key version (infra/secrets.tf): the one whose value the testbed retires.
SIGNING_KEY_VERSION = "aws_secretsmanager_secret_version.signing_key"


class SecretsError(TestbedError):
    """A secret that leaked could not be retired."""


def leaked_versions(state: Mapping[str, Any], address: str = SIGNING_KEY_VERSION) -> list[LeakedVersion]:
    """The versions of the secret at `address` whose value the state holds in clear (`secret_string`
    set: written before write-only arguments, its value drawn by a data source that put it there too)."""
    found = []
    for resource in state.get("resources", []):
        if resource.get("mode") != "managed" or f"{resource.get('type')}.{resource.get('name')}" != address:
            continue
        if resource.get("module"):
            continue
        for instance in resource.get("instances", []):
            attributes = instance.get("attributes") or {}
            if attributes.get("secret_string") and attributes.get("secret_id") and attributes.get("version_id"):
                found.append(LeakedVersion(address, attributes["secret_id"], attributes["version_id"]))
    return found


def remember(path: Path, leaked: Iterable[LeakedVersion]) -> list[LeakedVersion]:
    """Add `leaked` to the versions still to retire (kept in `path` until they are: an apply or a
    retirement that fails half way is finished by the next `up`); all of them."""
    pending = {(v.address, v.secret_id, v.version_id) for v in leaked}
    with contextlib.suppress(FileNotFoundError, ValueError):
        pending |= {tuple(entry) for entry in json.loads(path.read_text())}
    if pending:
        path.write_text(json.dumps(sorted(pending)) + "\n")
    return [LeakedVersion(*entry) for entry in sorted(pending)]


def retire(secretsmanager: Any, leaked: Iterable[LeakedVersion]) -> list[str]:
    """Take every staging label off each leaked version, so the processor (which accepts AWSCURRENT
    and AWSPREVIOUS) stops accepting its key; what was retired. A leaked version that is still
    current is an error: retiring it would leave no key, keeping it keeps the leak."""
    retired = []
    for version in leaked:
        versions = secretsmanager.list_secret_version_ids(SecretId=version.secret_id)["Versions"]
        mine = [v.get("VersionStages", []) for v in versions if v["VersionId"] == version.version_id]
        stages: list[str] = mine[0] if mine else []
        if "AWSCURRENT" in stages:
            raise SecretsError(
                f"{version.address} ({version.version_id}), whose value the Terraform state held, is still the "
                "current key: the apply did not write a new one. Run `make up` again; if it persists, raise "
                "signing_key_version (docs/security.md)"
            )
        for stage in stages:
            secretsmanager.update_secret_version_stage(
                SecretId=version.secret_id, VersionStage=stage, RemoveFromVersionId=version.version_id
            )
        retired.append(f"{version.address} ({version.version_id})")
    return retired
