"""The hops of a stored reading's path, and the milliseconds each took, from the times its item carries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The hops of a stored reading's path, each timed from its item: they add up to its end-to-end latency.
# "processor to write": the invocation's start to its DynamoDB write request (the write's own latency,
# and its retries, come after the item's stored_at and are not in it).
HOPS = ("device to rule hand-off", "rule to processor", "processor to write")
ACK_HOP = "device to broker ack"
# After the write and off the stored reading's path: its archive record reaching S3 (on AWS this is
# Firehose's buffer, and S3 stamps objects to the second; ministack stamps them to the millisecond).
ARCHIVE_HOP = "write to archive"


def hop_samples(
    ts: Sequence[int], arrived: Sequence[int | None], invoked: Sequence[int | None], stored: Sequence[int]
) -> dict[str, np.ndarray]:
    """Milliseconds spent in each hop, per reading whose item carries its arrival and invocation."""
    timed = [
        (t, a, i, s) for t, a, i, s in zip(ts, arrived, invoked, stored, strict=True) if a is not None and i is not None
    ]
    columns = np.array(timed, dtype=float).reshape(-1, 4)
    return {hop: columns[:, n + 1] - columns[:, n] for n, hop in enumerate(HOPS)}
