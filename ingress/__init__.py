"""Ingress: the local broker's configuration and the rule bridge (the local IoT Rules Engine)."""
