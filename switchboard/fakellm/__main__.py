"""``python -m switchboard.fakellm``: run the fake LLM upstream until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from switchboard.fakellm.server import DEFAULT_HOST, start_server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard.fakellm",
        description="Fake OpenAI / Azure OpenAI / Anthropic upstream with deterministic replies.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=18080, help="0 picks a free port")
    parser.add_argument(
        "--require-key",
        # The environment variable keeps the key out of the process list.
        default=os.environ.get("FAKELLM_REQUIRE_KEY") or None,
        help="API key every request must carry (default: $FAKELLM_REQUIRE_KEY, else none)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (slow)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    server = await start_server(args.host, args.port, args.require_key, access_log=args.access_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(f"fakellm listening on {server.url}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
