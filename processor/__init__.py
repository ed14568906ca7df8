"""The ingest processor Lambda: validate, store, archive, alert and quarantine telemetry."""
