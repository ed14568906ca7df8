"""AWS IoT Core's message broker quotas (the AWS General Reference, "AWS IoT Core endpoints and
quotas"), in one place: the simulator keeps to them against AWS, the local quota gate enforces them."""

PUBLISHES_PER_S_PER_CONNECTION = 100
BYTES_PER_S_PER_CONNECTION = 512 * 1024
CONNECTS_PER_S_PER_CLIENT_ID = 1
MAX_PAYLOAD_BYTES = 128 * 1024
# inbound publishes per second per account in the larger regions (adjustable, lower elsewhere)
ACCOUNT_PUBLISHES_PER_S = 20_000
