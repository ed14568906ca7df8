"""System packages the testbed needs and pip cannot install: Mosquitto with its clients, and for the
tests Chromium (the HTML report renders in it). `make deps` installs what is missing with the
machine's package manager (apt-get, dnf or Homebrew; through `sudo -n` when not root) and does
nothing when all is there; `make demo`, `make up` and `make test` run it first.

Standard library only: it runs with the system's Python before any venv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ingress.broker import find_mosquitto
from testbed.exceptions import TestbedError
from testbed.lifecycle.runners import RunnerError, localstack_runner
from toolkit.settings import SETTINGS


@dataclass(frozen=True)
class Manager:
    """A package manager: how to install, and each need's package names under it."""

    name: str
    install: tuple[str, ...]
    packages: dict[str, tuple[str, ...]]
    needs_root: bool = True
    refresh: tuple[str, ...] = ()


MANAGERS = (
    Manager(
        "apt-get",
        ("apt-get", "install", "-y", "-qq"),
        {"mosquitto": ("mosquitto", "mosquitto-clients"), "chromium": ("chromium",)},
        refresh=("apt-get", "update", "-qq"),
    ),
    Manager("dnf", ("dnf", "install", "-y", "-q"), {"mosquitto": ("mosquitto",), "chromium": ("chromium",)}),
    Manager(
        "brew",
        ("brew", "install", "--quiet"),
        {"mosquitto": ("mosquitto",), "chromium": ("--cask", "chromium")},
        needs_root=False,
    ),
)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


class DepsError(TestbedError):
    """What is missing cannot be installed here; the message names the command to run."""


def runs_a_local_broker(backend: str) -> bool:
    """The backends whose broker is a process of this machine (compose runs it in a container)."""
    if backend == "localstack":
        return localstack_runner() == "host"
    return backend in ("embedded", "external")


def missing(for_tests: bool, backend: str = "embedded") -> list[str]:
    """What this machine lacks: `mosquitto` (the broker or its clients, where the backend runs it
    here, and for the tests), `chromium` (tests only)."""
    needs = []
    wanted = for_tests or runs_a_local_broker(backend)
    clients = all(shutil.which(tool) for tool in ("mosquitto_pub", "mosquitto_sub"))
    if wanted and (find_mosquitto() is None or not clients):
        needs.append("mosquitto")
    if for_tests and not any(shutil.which(name) for name in CHROMIUM_NAMES):
        needs.append("chromium")
    return needs


def manager() -> Manager | None:
    return next((m for m in MANAGERS if shutil.which(m.name)), None)


def commands(needs: Sequence[str], found: Manager, root: bool) -> list[list[str]]:
    """The commands that install `needs` with `found` (one per need: a Homebrew cask is a command of
    its own), through `sudo -n` where it needs root."""
    prefix = ["sudo", "-n"] if found.needs_root and not root else []
    steps = [[*prefix, *found.refresh]] if found.refresh else []
    return steps + [[*prefix, *found.install, *found.packages[need]] for need in needs]


PLATFORMS = {"apt-get": "Debian/Ubuntu", "dnf": "Fedora", "brew": "macOS"}


def how_to(needs: Sequence[str]) -> str:
    """The install command for each platform, for a machine where this cannot run it."""
    lines = []
    for found in MANAGERS:
        shown = " && ".join(" ".join(cmd) for cmd in commands(needs, found, root=False)).replace("sudo -n", "sudo")
        lines.append(f"{PLATFORMS[found.name]}: {shown}")
    return "; ".join(lines)


def install(for_tests: bool, backend: str = "embedded") -> list[str]:
    """Install what is missing; returns what was. Raises DepsError naming the commands otherwise."""
    needs = missing(for_tests, backend)
    if not needs:
        return []
    found = manager()
    if found is None:
        raise DepsError(f"missing {', '.join(needs)} and no apt-get, dnf or brew here; install: {how_to(needs)}")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if found.needs_root and not root and shutil.which("sudo") is None:
        raise DepsError(f"missing {', '.join(needs)}; as root run: {how_to(needs)}")
    broker_was_missing = find_mosquitto() is None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in commands(needs, found, root):
        print("==>", " ".join(cmd), flush=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise DepsError(f"`{' '.join(cmd)}` failed; install by hand: {how_to(needs)}")
    if broker_was_missing and "mosquitto" in needs and found.name == "apt-get" and shutil.which("systemctl"):
        # Debian's package starts a system broker on 1883, the port the testbed's own broker takes:
        # the one just installed (never one that was there before) is stopped, where systemd runs at all
        stop = [*(["sudo", "-n"] if not root else []), "systemctl", "disable", "--now", "mosquitto"]
        print("==>", " ".join(stop), flush=True)
        subprocess.run(stop, env=env, capture_output=True)
    still = missing(for_tests, backend)
    if still:
        raise DepsError(f"still missing {', '.join(still)} after installing; install by hand: {how_to(still)}")
    return needs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deps", description="Install the system packages the testbed needs.")
    parser.add_argument("--tests", action="store_true", help="also what the tests need (Chromium)")
    parser.add_argument("--backend", default=SETTINGS["BACKEND"].text(), help="the backend to install for")
    args = parser.parse_args(argv)
    try:
        done = install(args.tests, args.backend)
    except (DepsError, RunnerError) as exc:
        print(f"deps: {exc}", file=sys.stderr)
        return 1
    print(f"deps: installed {', '.join(done)}" if done else "deps: nothing missing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
