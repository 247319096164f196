"""The drain task on a real Celery worker process, against the test database."""

import os
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import pytest
import redis
from django.conf import settings
from django.db import connection

from analytics.models import UsageRecord
from analytics.tasks import usage_drain_task
from analytics.usage import USAGE_GROUP, usage_stream_key
from tests.analytics.factories import MakeTenant, events_append, usage_event

WAIT_S = 20.0


def worker_start(log_path: Path) -> subprocess.Popen[bytes]:
    database = connection.settings_dict
    env = {
        **os.environ,
        "SWITCHBOARD_ENV": "test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "switchboard",
        "worker",
        "--pool",
        "solo",
        "--queues",
        "default",
        "--concurrency",
        "1",
        "--hostname",
        f"analytics-test-{uuid4().hex[:8]}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
    ]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def worker_stop(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_drains_the_stream_into_postgres(
    make_tenant: MakeTenant, redis_client: redis.Redis, tmp_path: Path
) -> None:
    tenant = make_tenant("worker")
    event = usage_event(tenant.id)
    events_append([event])
    log_path = tmp_path / "worker.log"
    worker = worker_start(log_path)
    try:
        usage_drain_task.delay()
        deadline = time.monotonic() + WAIT_S
        # The broker's `default` queue is shared with other test runs; if another run's
        # worker takes the task (and drains its own database), ask once more.
        retry_at = time.monotonic() + WAIT_S / 2
        while not UsageRecord.objects.filter(request_id=event.request_id).exists():
            now = time.monotonic()
            if now > deadline:
                pytest.fail(f"no record after {WAIT_S} s; worker log:\n{log_path.read_text()}")
            if worker.poll() is not None:
                pytest.fail(f"the worker exited; its log:\n{log_path.read_text()}")
            if now > retry_at:
                usage_drain_task.delay()
                retry_at = deadline + 1
            time.sleep(0.1)
    finally:
        worker_stop(worker)

    key = usage_stream_key(tenant.id)
    assert redis_client.xlen(key) == 0
    assert redis_client.xpending(key, USAGE_GROUP)["pending"] == 0
