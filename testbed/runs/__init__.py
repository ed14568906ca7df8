"""Load runs: scenarios, the run itself and its shards, faults, reconciliation, reports, the demo."""
