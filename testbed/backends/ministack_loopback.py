"""Start ministack with every listener on BIND_HOST, including the IoT mTLS one.

Runs under ministack's own venv (stdlib + ministack only). ministack honours BIND_HOST for its
gateway, but binds its MQTT-over-TLS listener (port 8883, IOT_MTLS_PORT) to 0.0.0.0 with no
setting to change it. The testbed never listens beyond loopback, so this launcher rewrites a
wildcard bind to BIND_HOST before ministack starts; nothing else about ministack changes.
"""

from __future__ import annotations

import asyncio.base_events
import os
import sys
from typing import Any

from ministack.app import main as ministack_main  # type: ignore[import-not-found]

WILDCARDS = {"0.0.0.0", "::", ""}


def _pin_binds(bind_host: str) -> None:
    original = asyncio.base_events.BaseEventLoop.create_server

    async def create_server(self: Any, protocol_factory: Any, host: Any = None, *args: Any, **kwargs: Any) -> Any:
        # host None with a ready socket (ministack's gateway) is left alone: that socket is bound already
        if host in WILDCARDS or (host is None and kwargs.get("sock") is None):
            host = bind_host
        return await original(self, protocol_factory, host, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.create_server = create_server  # type: ignore[method-assign]


def main() -> int:
    _pin_binds(os.environ.get("BIND_HOST", "127.0.0.1"))
    sys.argv[0] = "ministack"
    return int(ministack_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
