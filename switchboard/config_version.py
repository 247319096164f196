"""The configuration version: every process rebuilds its gateway snapshot when it changes.

Services that change anything the gateway reads (keys, tenants, deployments, …) call
`config_changed()` inside their transaction; the bump happens after commit, so a process that
sees the new version also sees the committed rows.
"""

import logging
from collections.abc import Callable

from django.db import transaction

from switchboard.redis_client import redis_sync

CONFIG_VERSION_KEY = "sb:config:version"
logger = logging.getLogger(__name__)


def _bump() -> None:
    try:
        redis_sync().incr(CONFIG_VERSION_KEY)
    except Exception:
        # Snapshots also rebuild on a timer, so a missed bump only delays propagation.
        logger.warning("could not bump the config version; snapshots refresh on their timer")


_local_listeners: list[Callable[[], None]] = []


def on_config_change(listener: Callable[[], None]) -> None:
    """Also tell this process at once (its own next read must not wait for the timer)."""
    _local_listeners.append(listener)


def config_changed() -> None:
    for listener in _local_listeners:
        listener()
    transaction.on_commit(_bump)
