"""AWS IoT Core's quotas in a run: whether the stack's quota gate holds the scenario's, how long the
devices wait for a PUBACK before they send again, and the run's account: which devices hit which
quota, when and how often (the gate's ledger), next to what the simulator saw of the same devices."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingress.quotas.limits import IotQuotas
from simulator.summary import RunSummary
from testbed.lifecycle.stack import Stack
from testbed.runs.reconcile import MessageId
from testbed.runs.scenario import DEFAULT_ACK_TIMEOUT_S, Scenario, ScenarioError

# devices the report's table lists (the busiest first); report.json holds them all
SHOWN_DEVICES = 20


@dataclass(frozen=True)
class QuotaAccount:
    """What the quota gate refused of one run's devices."""

    enforced: dict[str, float]  # the quotas the gate held (IotQuotas)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    throttled_ids: frozenset[MessageId] = frozenset()
    ledger_error: str | None = None

    @property
    def throttled_publishes(self) -> int:
        return sum(sum(d["by_quota"].values()) for d in self.devices.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "enforced": self.enforced,
            "throttled_publishes": self.throttled_publishes,
            "devices_throttled": len(self.devices),
            "devices": self.devices,
            **({"ledger_error": self.ledger_error} if self.ledger_error else {}),
        }


def quota_account(
    ledger: Path, quotas: IotQuotas, summary: RunSummary, device_ids: list[str], started: float
) -> QuotaAccount:
    """The run's devices in the quota gate's ledger. Each hit device's row holds its
    hits by quota, the first and last (seconds into the run), and the simulator's resends,
    acknowledged and failed messages."""
    enforced = quotas.model_dump()
    try:
        whole = json.loads(ledger.read_text())
    except FileNotFoundError:
        whole = {}  # the gate writes once something happened: no file, no hit
    except (OSError, ValueError) as exc:
        return QuotaAccount(enforced, ledger_error=f"{ledger} could not be read: {exc}")
    recorded = whole.get("devices", {}) if isinstance(whole, dict) else None
    if not isinstance(recorded, dict):
        return QuotaAccount(enforced, ledger_error=f"{ledger} could not be read: it holds no ledger of devices")
    devices: dict[str, dict[str, Any]] = {}
    throttled: set[MessageId] = set()
    for device_id in device_ids:
        hits = recorded.get(device_id)
        if not isinstance(hits, dict) or not hits.get("by_quota"):
            continue
        seen = summary["per_device"].get(device_id)
        devices[device_id] = {
            "by_quota": hits["by_quota"],
            "first_s": _into_run(hits.get("first"), started),
            "last_s": _into_run(hits.get("last"), started),
            "resends": seen.get("resends", 0) if seen else 0,
            "acknowledged": len(set(seen["acked"])) if seen else 0,
            "failed": len(set(seen["failed"]) - set(seen["acked"])) if seen else 0,
        }
        throttled.update((device_id, int(m)) for m in hits.get("msg_ids", []) if isinstance(m, int))
    return QuotaAccount(enforced, devices, frozenset(throttled))


def _into_run(at: object, started: float) -> float | None:
    return round(at - started, 1) if isinstance(at, (int, float)) else None


def resend_after(stack: Stack, scenario: Scenario) -> float | None:
    """How long the devices wait for a PUBACK before they send again; refuses a scenario whose
    quotas the stack's quota gate does not hold. Behind a gate, devices resend as AWS's SDKs do."""
    gate = stack.backend.quota_gate()
    if scenario.aws_quotas is not None and (gate is None or gate[1] != scenario.aws_quotas):
        raise ScenarioError(
            f"scenario {scenario.name} needs the quota gate with its quotas ({scenario.aws_quotas.model_dump()}): "
            "`make simulate` brings the stack up with them; `--no-up` needs a stack brought up so"
            + (f" (the gate holds {gate[1].model_dump()})" if gate is not None else " (AWS_QUOTAS=on)")
        )
    if scenario.resend_after_s is None and gate is not None and scenario.qos:
        return DEFAULT_ACK_TIMEOUT_S
    return scenario.resend_after_s


def quota_lines(account: dict[str, Any] | None) -> list[str]:
    """report.md's section on the quotas: what was enforced, and the devices that hit one."""
    if account is None:
        return []
    enforced = ", ".join(f"{name} {value:g}" for name, value in account["enforced"].items())
    lines = ["## AWS IoT Core quotas", "", f"Enforced before any PUBACK: {enforced}.", ""]
    if account.get("ledger_error"):
        return [*lines, f"The quota gate's ledger: {account['ledger_error']}", ""]
    devices = sorted(account["devices"].items(), key=lambda kv: -sum(kv[1]["by_quota"].values()))
    if not devices:
        return [*lines, "No device hit a quota.", ""]
    lines += [
        f"{account['throttled_publishes']:,} publishes throttled, of {account['devices_throttled']:,} devices "
        "(refused, never lost: at QoS 1 the device sends them again).",
        "",
        "| device | throttled, by quota | first (s into the run) | last | resends | acknowledged | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for device_id, row in devices[:SHOWN_DEVICES]:
        hits = "; ".join(f"{quota}: {n:,}" for quota, n in row["by_quota"].items())
        span = [f"{row[k]:g}" if row[k] is not None else "" for k in ("first_s", "last_s")]
        lines.append(
            f"| {device_id} | {hits} | {span[0]} | {span[1]} | {row['resends']:,} | {row['acknowledged']:,} "
            f"| {row['failed']:,} |"
        )
    if len(devices) > SHOWN_DEVICES:
        lines.append(f"\n{len(devices) - SHOWN_DEVICES} more in report.json")
    return [*lines, ""]
