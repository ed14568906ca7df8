"""The API fault layer: an HTTP proxy between the pipeline's AWS clients and a backend's endpoint
that answers calls with AWS's own errors, or delays them, by rules set through LocalStack's Chaos
API, and passes every other call through unchanged."""
