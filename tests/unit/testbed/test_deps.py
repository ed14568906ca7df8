"""`make deps`: the system packages pip cannot install, installed where missing with the machine's
package manager, and named with the command for each platform where that cannot be done."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testbed.operate import deps
from testbed.operate.deps import MANAGERS, DepsError


def fake_manager(bin_dir: Path, name: str, works: bool = True) -> Path:
    """A package manager that 'installs' Mosquitto by putting its three programs on PATH, and logs
    how it was called."""
    log = bin_dir / f"{name}.log"
    installs = "".join(f'printf "#!/bin/sh\\n" > {bin_dir}/{p}; /bin/chmod +x {bin_dir}/{p}; ' for p in (
        "mosquitto", "mosquitto_pub", "mosquitto_sub"
    ))  # fmt: skip
    body = f'echo "$@" >> {log}\n' + (f'case "$1" in install) {installs};; esac\n' if works else "exit 100\n")
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}")
    (bin_dir / name).chmod(0o755)
    return log


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine with nothing installed: an empty PATH of our own, no Mosquitto where packages put it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("MOSQUITTO", str(bin_dir / "mosquitto"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return bin_dir


def test_what_is_missing_is_installed_once_and_then_nothing_is(bare: Path) -> None:
    log = fake_manager(bare, "apt-get")
    assert deps.missing(for_tests=False) == ["mosquitto"]
    assert deps.install(for_tests=False) == ["mosquitto"]
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq mosquitto mosquitto-clients"]
    assert deps.install(for_tests=False) == [] and len(log.read_text().splitlines()) == 2


def test_a_backend_whose_broker_runs_in_a_container_needs_none_here(bare: Path) -> None:
    assert deps.missing(for_tests=False, backend="ministack-docker") == []
    assert deps.missing(for_tests=True, backend="ministack-docker") == ["mosquitto", "chromium"]


def test_no_package_manager_names_the_command_for_each_platform(bare: Path) -> None:
    with pytest.raises(DepsError) as raised:
        deps.install(for_tests=True)
    said = str(raised.value)
    assert "missing mosquitto, chromium and no apt-get, dnf or brew here" in said
    assert "Debian/Ubuntu: sudo apt-get update -qq && sudo apt-get install -y -qq mosquitto mosquitto-clients" in said
    assert "Fedora: sudo dnf install -y -q mosquitto && sudo dnf install -y -q chromium" in said
    assert "macOS: brew install --quiet mosquitto && brew install --quiet --cask chromium" in said


def test_a_failed_install_is_named_and_nothing_is_claimed(bare: Path) -> None:
    fake_manager(bare, "dnf", works=False)
    with pytest.raises(DepsError, match=r"`dnf install -y -q mosquitto` failed; install by hand"):
        deps.install(for_tests=False)


def test_not_root_goes_through_sudo_without_a_prompt() -> None:
    apt = next(m for m in MANAGERS if m.name == "apt-get")
    brew = next(m for m in MANAGERS if m.name == "brew")
    assert deps.commands(["mosquitto"], apt, root=False)[1][:2] == ["sudo", "-n"]
    assert deps.commands(["chromium"], brew, root=False) == [["brew", "install", "--quiet", "--cask", "chromium"]]
