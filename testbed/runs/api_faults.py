"""A scenario's API faults, set and lifted through the fault proxy's Chaos API while the load runs."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from fault_proxy.server import FAULTS_PATH, LEDGER_PATH, SEED_PATH
from testbed.runs.faults import FaultError, FaultSpec

TIMEOUT_S = 10.0
# After a fault is lifted, the SDK's retries of the calls it failed still come (botocore backs off up
# to a few seconds between attempts): its tally is read once they have.
SETTLE_S = 3.0


class ApiFaults:
    """The fault proxy at `url` (a stack's, with API_FAULTS=on)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise FaultError(f"the fault proxy refused {method} {path}: {exc.read().decode(errors='replace')}") from exc
        except OSError as exc:
            raise FaultError(f"the fault proxy at {self.url} did not answer: {exc}") from exc

    def seed(self, seed: int) -> None:
        self._call("POST", SEED_PATH, {"seed": seed})

    def inject(self, spec: FaultSpec) -> dict[str, int]:
        """Set the fault's rule, hold it `down_s`, lift it; what it did to the calls it matched."""
        rule = spec.rule().model_dump(mode="json", exclude_none=True)
        self._call("PATCH", FAULTS_PATH, [rule])
        try:
            time.sleep(spec.down_s)
        finally:
            self._call("DELETE", FAULTS_PATH, [rule])
        time.sleep(SETTLE_S)
        tally = next(t for t in self._call("GET", LEDGER_PATH)["rules"] if t["rule"] == rule)
        return {key: int(value) for key, value in tally.items() if key != "rule"}
