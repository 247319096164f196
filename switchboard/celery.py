"""The Celery application; every periodic schedule lives in `beat_schedule` here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "switchboard.settings")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# All beat schedules in one place (issues for budgets, analytics and health checks add theirs).
app.conf.beat_schedule = {
    # Usage events: Redis streams -> PostgreSQL, at least once, idempotent by request id.
    "analytics.usage-drain": {
        "task": "analytics.usage_drain",
        "schedule": 2.0,
        "options": {"queue": "default", "expires": 10},
    },
    # A/B experiments with auto-promotion: promote a significant winner.
    "gateway.experiments-auto-promote": {
        "task": "gateway.experiments_auto_promote",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 50},
    },
    # Budget threshold and forecast emails (each once per budget, period and level).
    "budgets.alerts": {
        "task": "budgets.alerts",
        "schedule": 30.0,
        "options": {"queue": "default", "expires": 25},
    },
    # Redis budget counters against PostgreSQL, the authority.
    "budgets.reconcile": {
        "task": "budgets.reconcile",
        "schedule": 300.0,
        "options": {"queue": "default", "expires": 240},
    },
    # Monthly cost statements to finance members (first day of the month, tenant's zone).
    "analytics.statements": {
        "task": "analytics.statements",
        "schedule": 3600.0,
        "options": {"queue": "default", "expires": 1800},
    },
    "analytics.exports-prune": {
        "task": "analytics.exports_prune",
        "schedule": 24 * 3600.0,
        "options": {"queue": "default", "expires": 3600},
    },
    "tenants.prune-audit-events": {
        "task": "tenants.audit_events_prune",
        "schedule": 24 * 3600.0,
        "options": {"queue": "default", "expires": 3600},
    },
}
