"""`python -m fault_proxy --upstream URL`: the API fault layer in front of a backend, on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from fault_proxy.server import FaultProxy

LOOPBACK = "127.0.0.1"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fault_proxy", description=__doc__)
    p.add_argument("--upstream", required=True, help="the backend's endpoint, e.g. http://127.0.0.1:4566")
    p.add_argument("--port", type=int, default=0, help="the port to listen on (0: a free one)")
    p.add_argument("--seed", type=int, default=0, help="the same seed and calls give the same faults")
    p.add_argument("--port-file", type=Path, help="where to write the port it listens on, once it does")
    p.add_argument("--log-level", default="WARNING")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.upstream.startswith(("http://", "https://")):
        parser().error(f"--upstream must be an http(s) URL, not {args.upstream!r}")
    if not 0 <= args.port <= 65535:
        parser().error(f"--port {args.port} is not a port")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(FaultProxy(args.upstream, args.seed), args.port, args.port_file))
    return 0


async def serve(proxy: FaultProxy, port: int, port_file: Path | None) -> None:
    """Listen until SIGTERM or SIGINT; the port is announced (file, stdout) once it accepts calls."""
    runner = web.AppRunner(proxy.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    bound = runner.addresses[0][1]
    if port_file is not None:
        temporary = port_file.with_suffix(".tmp")
        temporary.write_text(str(bound))
        temporary.replace(port_file)
    print(f"fault proxy on {LOOPBACK}:{bound} -> {proxy.upstream}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
