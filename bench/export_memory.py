"""Memory of the finance exports over a large month: CSV and XLSX of every record.

    .venv/bin/python bench/export_memory.py [--rows 1000000] [--skip-xlsx]

Uses its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/sbbench; created and migrated if missing), fills one
tenant's month with `--rows` usage records (generate_series, in SQL), then streams the record
export as CSV and as XLSX and the statement as CSV, consuming each stream the way an HTTP
response would, while a thread samples the process RSS. Reports rows, bytes, seconds and the
peak RSS above the baseline for each — bounded memory means the peak does not grow with rows.
"""

import argparse
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")
os.environ["SWITCHBOARD_ENV"] = "development"
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sbbench"
)


def _ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.05)

    def __enter__(self) -> "Peak":
        self.peak = _rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-xlsx", action="store_true")
    args = parser.parse_args()
    _ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from analytics import reports
    from tenants.models import Tenant

    call_command("migrate", verbosity=0)
    tenant, _ = Tenant.objects.get_or_create(slug="bench-exports", defaults={"name": "Bench"})
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    count = tenant.usage_records.count()
    if count != args.rows:
        tenant.usage_records.all().delete()
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO analytics_usagerecord (request_id, created_at, tenant_id, end_user,
                  model, provider, task_type, prompt_tokens, completion_tokens, cached_tokens,
                  cost_usd, saved_cost_usd, latency_ms, status, http_status, error_type,
                  attempts, fallback_count, cached, stream, metadata, variant)
                SELECT 'bench-' || g,
                  %s::timestamptz + ((g * 2) %% (30 * 86400)) * interval '1 second', %s,
                  'user-' || (g %% 500), 'model-' || (g %% 7), 'openai', 'chat', 100 + g %% 50,
                  200 + g %% 30, 0, (g %% 97) * 0.0000123, 0, 50 + g %% 400, 'success', 200, '',
                  1, 0, false, false, '{}'::jsonb, ''
                FROM generate_series(1, %s) AS g
                """,
                [start, tenant.pk, args.rows],
            )
    baseline = _rss_mb()
    print(f"{args.rows} records; baseline RSS {baseline:.0f} MB")
    phases = [("usage CSV", lambda: reports.csv_stream(reports.usage_rows(tenant, start, end))),
              ("statement CSV", lambda: reports.csv_stream(
                  reports.statement_rows(tenant, start, end)))]  # fmt: skip
    for name, build in phases:
        started, size = time.perf_counter(), 0
        with Peak() as peak:
            for chunk in build():
                size += len(chunk)
        print(f"{name:>14}: {size / 1e6:8.1f} MB out in {time.perf_counter() - started:6.1f} s, "
              f"peak RSS +{peak.peak - baseline:.0f} MB")  # fmt: skip
    if not args.skip_xlsx:
        started = time.perf_counter()
        with Peak() as peak, reports.xlsx_file(reports.usage_rows(tenant, start, end),
                                               title="usage") as handle:  # fmt: skip
            handle.seek(0, 2)
            size = handle.tell()
        took = time.perf_counter() - started
        print(f"{'usage XLSX':>14}: {size / 1e6:8.1f} MB out in {took:6.1f} s, "
              f"peak RSS +{peak.peak - baseline:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
