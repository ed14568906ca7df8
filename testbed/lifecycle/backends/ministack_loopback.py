"""Start ministack with every listener on BIND_HOST, including the IoT mTLS one.

Runs under ministack's own venv (stdlib + ministack only). ministack honours BIND_HOST for its
gateway, but binds its MQTT-over-TLS listener (port 8883, IOT_MTLS_PORT) to 0.0.0.0 with no
setting to change it. The testbed never listens beyond loopback, so this launcher rewrites a
wildcard bind to BIND_HOST before ministack starts.

ministack saves its state only on a graceful stop, so a SIGKILL loses everything since it
started, the deployed stack included. SIGUSR1 (which would otherwise kill it unsaved) makes it
save now, exactly as its shutdown does, and then write the time into $MINISTACK_SNAPSHOT_MARKER.

A queue's URL carries the port the emulator had when the queue was made, and state restored on
another port keeps it: SQS calls still find the queue by its name, but the SQS event source mapping
looks a queue up by the URL of the current port and silently skips it. Restored queues are moved to
the URLs of the port it listens on now, messages and all.
"""

from __future__ import annotations

import asyncio.base_events
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ministack import app  # type: ignore[import-not-found]
from ministack.app import main as ministack_main  # type: ignore[import-not-found]
from ministack.core.persistence import save_all  # type: ignore[import-not-found]
from ministack.services import sqs  # type: ignore[import-not-found]

WILDCARDS = {"0.0.0.0", "::", ""}


def _pin_binds(bind_host: str) -> None:
    original = asyncio.base_events.BaseEventLoop.create_server

    async def create_server(self: Any, protocol_factory: Any, host: Any = None, *args: Any, **kwargs: Any) -> Any:
        # host None with a ready socket (ministack's gateway) is left alone: that socket is bound already
        if host in WILDCARDS or (host is None and kwargs.get("sock") is None):
            host = bind_host
        return await original(self, protocol_factory, host, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.create_server = create_server  # type: ignore[method-assign]


def _save_on_sigusr1(marker: Path) -> None:
    def save(signum: int, frame: Any) -> None:
        started = time.time()
        save_all(app._build_persistence_save_dict())
        marker.write_text(f"{started}\n")

    signal.signal(signal.SIGUSR1, save)


def _rehome_restored_queues() -> None:
    restore = sqs._restore_state

    def restore_then_rehome(data: Any) -> Any:
        result = restore(data)
        with sqs._queues_lock:
            for scoped_key, queue in list(sqs._queues.all_items()):
                scope = sqs._queue_scope_from_record(scoped_key, queue)
                if not scope:
                    continue
                account, region, name, url = scope
                current = sqs._queue_url_for_account(account, name)
                if url != current:
                    sqs._queues.pop_scoped(account, region, url)
                    queue["url"] = current
                    sqs._queues.set_scoped(account, region, current, queue)
                    sqs._queue_name_to_url.set_scoped(account, region, name, current)
        return result

    sqs._restore_state = restore_then_rehome


def main() -> int:
    _pin_binds(os.environ.get("BIND_HOST", "127.0.0.1"))
    _rehome_restored_queues()
    marker = os.environ.get("MINISTACK_SNAPSHOT_MARKER")
    if os.environ.get("PERSIST_STATE") == "1" and marker:
        _save_on_sigusr1(Path(marker))
    sys.argv[0] = "ministack"
    return int(ministack_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
