"""The device fleet: realistic, reproducible MQTT telemetry load from a fleet file and a seed."""
