"""``FakeLLM``: run the fake upstream in a background thread for synchronous tests.

    with FakeLLM() as fake:
        client = openai.OpenAI(base_url=fake.url + "/v1", api_key="x")
        ...
        assert fake.stats()["requests"] == 1

The server gets its own event loop in a daemon thread and an ephemeral port on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from switchboard.fakellm.server import DEFAULT_HOST, RunningServer, start_server

T = TypeVar("T")
TIMEOUT = 10.0


class FakeLLM:
    """A fake LLM server in a background thread; use as a context manager or start()/stop()."""

    def __init__(
        self, require_key: str | None = None, *, host: str = DEFAULT_HOST, port: int = 0
    ) -> None:
        self.require_key = require_key
        self.host = host
        self._requested_port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: RunningServer | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def url(self) -> str:
        """Base URL without a path, e.g. ``http://127.0.0.1:54321``."""
        return self._running().url

    def start(self) -> FakeLLM:
        """Start the server and wait until it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeLLM is already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="fakellm", daemon=True)
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            raise RuntimeError("FakeLLM did not start in time")
        if self._error is not None:
            self._thread.join(TIMEOUT)
            self._thread = None
            raise RuntimeError("FakeLLM failed to start") from self._error
        return self

    def stop(self) -> None:
        """Stop the server (releasing hanging requests) and join its thread. Idempotent."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop_event.set)
        thread.join(TIMEOUT)
        self._thread = self._loop = self._server = self._stop_event = None

    def stats(self) -> dict[str, Any]:
        """Same as ``GET /__fake__/stats``: request counts by path, model and status."""
        return self._call(self._snapshot())

    def reset(self) -> None:
        """Same as ``POST /__fake__/reset``: zero the counters and fail_first bookkeeping."""
        self._call(self._reset())

    def require(self, key: str | None) -> None:
        """Change the key every request must carry (None: any), e.g. to simulate rotation."""
        self._call(self._require(key))

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _running(self) -> RunningServer:
        if self._server is None:
            raise RuntimeError("FakeLLM is not running; call start() or use it in a with block")
        return self._server

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        # The counters live on the server's loop; touching them from here could race it.
        if self._loop is None:
            coro.close()
            raise RuntimeError("FakeLLM is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT)

    async def _snapshot(self) -> dict[str, Any]:
        return self._running().state.snapshot()

    async def _reset(self) -> None:
        self._running().state.reset()

    async def _require(self, key: str | None) -> None:
        self.require_key = key
        self._running().state.require_key = key

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            server = await start_server(self.host, self._requested_port, self.require_key)
        except BaseException as error:  # reported to start() in the calling thread
            self._error = error
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._server = server
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await server.close()
