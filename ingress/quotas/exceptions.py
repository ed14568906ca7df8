"""What the quota gate refuses."""


class ProtocolError(ValueError):
    """Bytes that are not the MQTT the gate can read: the connection is closed, as a broker would."""
