"""``/healthz`` (the process answers) and ``/readyz`` (its dependencies answer), in JSON."""

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from integrations.models import Connector


@never_cache
@require_GET
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means not ready
        return {"ok": False, "error": type(exc).__name__}
    return {
        "ok": True,
        "vendor": connection.vendor,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _broker() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "in-process"}
    from portal.celery import app

    try:
        with app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # unreachable broker
        return {"ok": False, "mode": "broker", "error": type(exc).__name__}
    return {"ok": True, "mode": "broker"}


@never_cache
@require_GET
def readyz(request) -> JsonResponse:
    database = _database()
    broker = _broker()
    connectors = []
    if database["ok"]:
        # Each connector's last outcome (a test, a sync, a token refresh): reported, not
        # counted against readiness, since one revoked credential does not stop the others.
        connectors = [
            {
                "name": name,
                "provider": provider,
                "health": health,
                "last_checked_at": checked.isoformat() if checked else None,
                "last_success_at": succeeded.isoformat() if succeeded else None,
                "last_error": error,
            }
            for name, provider, health, checked, succeeded, error in (
                Connector.objects.values_list(
                    "name", "provider", "health", "last_checked_at", "last_success_at", "last_error"
                )
            )
        ]
    ready = database["ok"] and broker["ok"]
    return JsonResponse(
        {
            "status": "ready" if ready else "unavailable",
            "database": database,
            "broker": broker,
            "connectors": connectors,
        },
        status=200 if ready else 503,
    )
