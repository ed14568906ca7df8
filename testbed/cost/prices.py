"""AWS list prices, one JSON file per region (prices/<region>.json), with their sources and date.

The files are data a user updates by hand; a file that would make a bill wrong (a negative price,
a missing item, an unknown one) is refused, naming the file and the item.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from testbed.exceptions import TestbedError

PRICES_DIR = Path(__file__).parent / "prices"
# Every item a bill prices: a price file must give each, and nothing else.
ITEMS = (
    "iot.connection_minutes",
    "iot.messages",
    "iot.rules_triggered",
    "iot.actions_executed",
    "sqs.requests",
    "lambda.requests",
    "lambda.gb_seconds",
    "dynamodb.write_request_units",
    "dynamodb.storage_gb_month",
    "firehose.ingested_gb",
    "s3.put_requests",
    "s3.storage_gb_month",
    "sns.publishes",
    "kms.requests",
    "kms.keys",
    "secretsmanager.secrets",
    "logs.ingested_gb",
    "cloudwatch.alarms",
)


class PriceError(TestbedError):
    """A price file is missing or would price a bill wrong."""


class Tier(BaseModel):
    """A monthly volume tier: `usd` per `per` units for the units of a month above `above`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    above: float = Field(gt=0, allow_inf_nan=False)
    usd: float = Field(ge=0, allow_inf_nan=False)


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    usd: float = Field(ge=0, allow_inf_nan=False)  # the first tier's price (a run's quantities never leave it)
    per: float = Field(gt=0, allow_inf_nan=False)
    unit: str
    free_per_month: float = Field(default=0, ge=0, allow_inf_nan=False)
    free_note: str = ""
    # the monthly volume tiers after the first, in ascending order (a month's bill prices through them)
    tiers: tuple[Tier, ...] = ()

    @model_validator(mode="after")
    def _tiers_ascend(self) -> Price:
        bounds = [tier.above for tier in self.tiers]
        if bounds != sorted(set(bounds)):
            raise ValueError("tiers must ascend")
        if bounds and bounds[0] < self.per:  # `above` counts units, `usd` is per `per` of them
            raise ValueError(f"a tier above {bounds[0]:g} units is below one pricing unit ({self.per:g}): count units")
        return self

    def cost(self, quantity: float, tiered: bool = False) -> float:
        """The quantity at the first tier's price, or through the volume tiers (a month's bill)."""
        if not tiered:
            return quantity * self.usd / self.per
        bounds = [0.0, *(tier.above for tier in self.tiers)]
        rates = [self.usd, *(tier.usd for tier in self.tiers)]
        ends = [*bounds[1:], math.inf]
        segments = zip(bounds, ends, rates, strict=True)
        return sum(max(0.0, min(quantity, end) - start) * rate / self.per for start, end, rate in segments)


class PriceBook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str
    currency: str
    as_of: str
    note: str = ""
    sources: dict[str, str]
    prices: dict[str, Price]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once (json.loads keeps the last of a repeated one)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given twice")
    return dict(pairs)


def load_prices(region: str = "us-east-1", path: Path | None = None) -> PriceBook:
    """The region's price file (or `path`), checked."""
    source = path or PRICES_DIR / f"{region}.json"
    if path is None and not source.is_file():
        shipped = sorted(p.stem for p in PRICES_DIR.glob("*.json"))
        raise PriceError(
            f"no price file for {region} (shipped: {', '.join(shipped)}): add testbed/cost/prices/{region}.json, "
            "or give one to `bin/testbed cost --prices`"
        )
    try:
        book = PriceBook.model_validate(json.loads(source.read_text(), object_pairs_hook=_no_duplicates))
    except (OSError, ValueError) as exc:
        detail = (
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise PriceError(f"cannot use the price file {source}: {detail}") from None
    if path is None and book.region != region:
        raise PriceError(f"the price file {source} is for {book.region}, not {region}: copy it only with its prices")
    missing = sorted(set(ITEMS) - set(book.prices))
    unknown = sorted(set(book.prices) - set(ITEMS))
    if missing or unknown:
        raise PriceError(
            f"the price file {source} "
            + "; ".join(
                part
                for part in (
                    f"lacks {', '.join(missing)}" if missing else "",
                    f"has items no bill uses: {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
        )
    return book
