"""A bill: each priced item of a traffic, its cost, the free tier beside it (never subtracted), and
what a change of design would save."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from testbed.cost.prices import ITEMS, PriceBook, PriceError
from testbed.cost.traffic import MONTH_S, Traffic

# the design changes every bill shows, each as a change of the traffic
LAMBDA_BATCH_WHAT_IF = 100
FIREHOSE_BUFFER_WHAT_IF = (128.0, 900.0)  # MiB, s: the largest buffer a delivery stream takes


@dataclass(frozen=True)
class Line:
    item: str
    quantity: float
    unit: str
    usd: float
    basis: str
    free_usd: float  # what the monthly free tier would cover (a monthly bill only)


@dataclass(frozen=True)
class Bill:
    lines: tuple[Line, ...]
    prices: PriceBook
    seconds: float

    @property
    def total_usd(self) -> float:
        return sum(line.usd for line in self.lines)

    @property
    def free_usd(self) -> float:
        return sum(line.free_usd for line in self.lines)

    def by_service(self) -> dict[str, float]:
        services: dict[str, float] = {}
        for line in self.lines:
            service = line.item.split(".", 1)[0]
            services[service] = services.get(service, 0.0) + line.usd
        return services

    def as_dict(self) -> dict[str, Any]:
        return {
            "period_s": round(self.seconds, 3),
            "total_usd": round(self.total_usd, 6),
            "free_tier_would_cover_usd": round(self.free_usd, 6),
            "by_service_usd": {name: round(usd, 6) for name, usd in self.by_service().items()},
            "lines": [
                {
                    "item": line.item,
                    "quantity": round(line.quantity, 6),
                    "unit": line.unit,
                    "usd": round(line.usd, 6),
                    "basis": line.basis,
                }
                for line in self.lines
            ],
        }


def bill_of(traffic: Traffic, prices: PriceBook) -> Bill:
    """Price each item; a month's bill prices through the volume tiers and shows the free tier each
    item has beside it, not subtracted."""
    monthly = traffic.seconds == MONTH_S
    quantities, lines = traffic.quantities(), []
    for item in ITEMS:
        (quantity, basis), price = quantities[item], prices.prices[item]
        free = price.cost(min(quantity, price.free_per_month)) if monthly else 0.0
        lines.append(Line(item, quantity, price.unit, price.cost(quantity, tiered=monthly), basis, free))
    bill = Bill(tuple(lines), prices, traffic.seconds)
    if not all(math.isfinite(v) for v in (bill.total_usd, bill.free_usd)):
        huge = [line.item for line in lines if not (math.isfinite(line.usd) and math.isfinite(line.free_usd))]
        raise PriceError(
            f"the prices give no finite total (an item's price times its quantity overflows: "
            f"{', '.join(huge) or 'their sum'}): check the price file of {prices.region}"
        )
    return bill


def what_ifs(month: Traffic, prices: PriceBook) -> dict[str, float]:
    """Monthly USD saved by each design change (0 where the traffic has it already)."""
    base = bill_of(month, prices).total_usd
    batch = max(month.records_per_invocation, LAMBDA_BATCH_WHAT_IF) if month.records_per_invocation else 0.0
    size, interval = FIREHOSE_BUFFER_WHAT_IF
    changes = {
        "publish through Basic Ingest": month.with_changes(basic_ingest=True),
        f"Lambda batches of {LAMBDA_BATCH_WHAT_IF} records": month.with_changes(
            records_per_invocation=batch,
            # compute per record stays; the per-invocation share is what a batch saves
            ms_per_invocation=month.ms_per_invocation * batch / month.records_per_invocation
            if month.records_per_invocation
            else month.ms_per_invocation,
        ),
        f"a Firehose buffer of {size:g} MiB / {interval:g} s": month.with_changes(buffer_mib=size, buffer_s=interval),
    }
    return {name: round(base - bill_of(changed, prices).total_usd, 4) for name, changed in changes.items()}


def cost_section(traffic: Traffic, prices: PriceBook) -> dict[str, Any]:
    """The `cost` section of a report: the run's bill, the month's at its sustained rate, the what-ifs."""
    month = traffic.per_month()
    return {
        "prices": {"region": prices.region, "as_of": prices.as_of, "currency": prices.currency},
        "run": bill_of(traffic, prices).as_dict(),
        "month": {**bill_of(month, prices).as_dict(), "rate_msg_s": round(traffic.messages / traffic.seconds, 2)},
        "month_savings_usd": what_ifs(month, prices),
        "basis": dict(traffic.basis),
    }
