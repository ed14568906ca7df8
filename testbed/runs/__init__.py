"""Load runs: scenarios, the run itself, faults, reading the stores, reconciliation, reports, the demo."""
