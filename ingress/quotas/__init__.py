"""AWS IoT Core's quotas in front of the local broker: an MQTT-aware gate that throttles what AWS
throttles before the broker can acknowledge it, and keeps a ledger of each device that hit a quota."""
