"""A run summary as a shard seals and a merge folds it, whatever the shard managed to send."""

from __future__ import annotations

from simulator.integrity import seal, verified
from simulator.summary import Recorder


def test_a_shard_that_sent_nothing_still_seals_and_merges_its_summary() -> None:
    """Its first and last send were infinities, which JSON (and so the seal) refuses: the shard
    wrote no summary and the merge said it did not finish, instead of naming its failed publishes."""
    nothing = Recorder().to_dict(raw=True)
    assert "first_send" not in nothing and "last_send" not in nothing
    sealed = seal(dict(nothing), b"k" * 32)
    assert verified(sealed, b"k" * 32)
    merged = Recorder()
    merged.merge(nothing)
    assert merged.to_dict()["send_span_s"] == 0.0
