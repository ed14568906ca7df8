"""The broker's refusals, counted from its log as Mosquitto 2.0 writes it."""

from __future__ import annotations

from pathlib import Path

from ingress.broker import count_refusals

LOG = """\
1796595236: mosquitto version 2.0.11 running
1796595237: New client connected from 127.0.0.1:34049 as d1 (p2, c1, k60).
1796595238: Client d1 disconnected due to oversize packet.
1796595300: Client d2 disconnected due to oversize packet.
1796595301: Client d3 disconnected, not authorised.
1796595302: Client d1 disconnected due to oversize packet.
\xff\xfe a line that is not text
"""


def test_each_refusal_since_a_time_is_counted_by_kind(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_bytes(LOG.encode("latin-1"))
    assert count_refusals(log, 0) == {"oversize packet": 3, "not authorised": 1}
    assert count_refusals(log, 1796595300.5) == {"oversize packet": 2, "not authorised": 1}
    assert count_refusals(log, 1796595303) == {}
    assert count_refusals(tmp_path / "none.log", 0) == {}
