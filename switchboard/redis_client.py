"""Shared Redis clients: one pooled client per URL (sync) and per URL and event loop (async).

Every Redis key Switchboard writes starts with `sb:` and carries a `{…}` hash tag (the tenant,
or the deployment for deployment-wide state) so multi-key scripts stay on one Cluster slot.
"""

import asyncio
import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import NoScriptError

_sync_clients: dict[str, redis.Redis] = {}
# Keyed by the loop object (weakly): a loop id can be reused after its loop is gone.
_AsyncClients = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]]
_async_clients: _AsyncClients = weakref.WeakKeyDictionary()

SOCKET_TIMEOUT_S = 2.0
ASYNC_POOL_SIZE = 512


def redis_sync() -> redis.Redis:
    url = settings.REDIS_URL
    client = _sync_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=SOCKET_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S
        )
        _sync_clients[url] = client
    return client


def redis_async() -> aioredis.Redis:
    """A client bound to the running event loop (redis-py async pools cannot cross loops)."""
    per_loop = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(settings.REDIS_URL)
    if client is None:
        # A blocking pool makes a burst wait briefly for a free connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            max_connections=ASYNC_POOL_SIZE,
            timeout=SOCKET_TIMEOUT_S,
        )
        client = aioredis.Redis(connection_pool=pool)
        per_loop[settings.REDIS_URL] = client
    return client


class LuaScript:
    """A Lua script run by EVALSHA, falling back to EVAL (which also caches it) once missing.

    redis-py's `register_script` binds a client; ours change per event loop, so keep the SHA.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)

    def run_sync(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)
