import json
import logging
import os
import socket

import pytest
from django.test import override_settings

from integrations.models import Connector
from portal.logging import JsonFormatter


def test_healthz_answers_without_a_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_broker_and_connector_health(client, db):
    Connector.objects.create(
        name="acme", provider="bitbucket_cloud", auth_kind="api_token", health="down"
    )
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True):
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ready"
    assert body["database"]["ok"] is True
    assert body["broker"] == {"ok": True, "mode": "in-process"}
    assert body["connectors"] == [
        {
            "name": "acme",
            "provider": "bitbucket_cloud",
            "health": "down",
            "last_checked_at": None,
            "last_success_at": None,
            "last_error": "",
        }
    ]


def test_readyz_is_unavailable_when_the_broker_is_unreachable(client, db, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


def _redis_listening() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_readyz_is_ready_with_a_reachable_redis_broker(client, db, settings):
    if not _redis_listening():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must provide Redis on 127.0.0.1:6379")
        pytest.skip("no Redis on 127.0.0.1:6379 (CI provides one)")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    body = client.get("/readyz").json()
    assert body["broker"] == {"ok": True, "mode": "broker"}


def test_json_log_lines_carry_the_extra_fields():
    record = logging.makeLogRecord(
        {
            "name": "integrations.engine.sync",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "integrations.sync.started",
            "run_id": 7,
            "integration_id": 3,
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "integrations.sync.started"
    assert line["run_id"] == 7 and line["integration_id"] == 3
    assert line["level"] == "info"


def test_readyz_is_unavailable_when_the_database_is_down(client, db, monkeypatch):
    from django.db import OperationalError

    from portal import health

    class DownDatabase:
        vendor = "postgresql"

        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(health, "connection", DownDatabase())
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == {"ok": False, "error": "OperationalError"}
    assert body["connectors"] == []
    assert client.get("/healthz").status_code == 200
