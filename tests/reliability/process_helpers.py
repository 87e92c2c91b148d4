"""Shared by the tests that need more than one process or connection: the PostgreSQL/Redis
requirement, real ``celery -A portal worker`` processes, a Bitbucket Cloud integration over a
sandbox, and the checks every race or crash test ends with (no duplicate rows, the clean-run
catalog).

A worker is a separate process: it reads the test database through ``DATABASE_URL``, takes
extra environment (``LANTERN_OUTBOUND_ALLOWLIST`` to reach a sandbox on loopback, providers
through ``LANTERN_EXTRA_PROVIDERS``) and, for settings the environment does not reach, a
settings module generated for it that extends ``portal.settings``.
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Model
from django.db.models.functions import Lower

from catalog.models import Entity, EntitySearch, Relation
from integrations.models import (
    Commit,
    Connector,
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    PullRequest,
    WebhookDelivery,
)
from portal.celery import app as celery_app
from sandbox import SandboxServer
from tests.integrations.bitbucket_cloud.conftest import make_connector, make_integration

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = "acme"


def require_postgres(*, redis: bool = False) -> None:
    """Skip unless the database is PostgreSQL (and the broker Redis, with ``redis``); with
    ``CI=true`` fail instead, so CI never silently skips these tests."""
    missing = []
    if connection.vendor != "postgresql":
        missing.append("DATABASE_URL on PostgreSQL")
    if redis and not str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://")):
        missing.append("CELERY_BROKER_URL on Redis")
    if missing:
        reason = "needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: this test must run)")
        pytest.skip(reason)


def test_database_url() -> str:
    """The URL of the database the tests run on (pytest-django's ``test_...`` one)."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


@dataclass
class CeleryWorker:
    """One ``celery -A portal worker`` process consuming a queue of its own."""

    queue: str
    log_path: Path
    process: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def send(self, task, *args) -> None:
        """Send ``task(*args)`` to this worker (tests otherwise run tasks in process)."""
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = False
        try:
            task.apply_async(args=args, queue=self.queue)
        finally:
            celery_app.conf.task_always_eager = eager

    def stop(self) -> None:
        """Stop the worker; delete its queue and the message a killed worker left unacked
        (Redis would hand it back to the queue after the visibility timeout)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        with celery_app.connection_for_write() as conn:
            channel = conn.default_channel
            channel.queue_delete(self.queue)
            client = channel.client
            for tag, raw in client.hgetall(channel.unacked_key).items():
                if json.loads(raw)[2] == self.queue:  # (message, exchange, routing key)
                    client.hdel(channel.unacked_key, tag)
                    client.zrem(channel.unacked_index_key, tag)


def celery_worker_start(
    directory: Path, *, env: dict[str, str] | None = None, settings_overrides: dict | None = None
) -> CeleryWorker:
    """Start a solo-pool worker on a fresh queue; its log and generated settings go in
    ``directory``. ``settings_overrides`` become a settings module extending portal.settings."""
    queue = f"lantern-test-{uuid.uuid4().hex[:10]}"
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    worker_env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **(env or {}),
    }
    if settings_overrides:
        module = f"worker_settings_{queue.replace('-', '_')}"
        lines = ["from portal.settings import *  # noqa: F403"]
        lines += [f"{name} = {value!r}" for name, value in settings_overrides.items()]
        (directory / f"{module}.py").write_text("\n".join(lines) + "\n")
        worker_env["DJANGO_SETTINGS_MODULE"] = module
        paths.insert(0, str(directory))
    worker_env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    log_path = directory / f"{queue}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            cwd=REPO_ROOT,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return CeleryWorker(queue=queue, log_path=log_path, process=process)


@pytest.fixture
def celery_workers(tmp_path) -> Iterator:
    """``start(env=..., settings_overrides=...)`` starts a real worker on the Redis broker
    (PostgreSQL and Redis required); every worker is stopped and its queue deleted after the
    test. ``worker.send(task, *args)`` runs a task in that process, not in the test's."""
    require_postgres(redis=True)
    workers: list[CeleryWorker] = []

    def start(**options) -> CeleryWorker:
        worker = celery_worker_start(tmp_path, **options)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def cloud_sandbox_integration(
    server: SandboxServer, *, name: str = "acme", **values
) -> Integration:
    """An integration over the sandbox's ``acme`` workspace, on a connector of its own (kept
    when the integration is deleted, and then used again)."""
    connector = Connector.objects.filter(name=f"cloud-{name}").first() or make_connector(
        server, name=f"cloud-{name}", config={"requests_per_hour": 10000}
    )
    return make_integration(connector, name=name, workspace=WORKSPACE, **values)


# -- what every race or crash test checks at the end --------------------------------------------

_NATURAL_KEYS: list[tuple[type[Model], tuple]] = [
    (DiscoveredEntity, ("integration_id", "external_id")),
    (PullRequest, ("discovered_id", "external_id")),
    (Commit, ("discovered_id", "hash")),
    (Entity, (Lower("kind"), Lower("namespace"), Lower("name"))),
    (Relation, ("originating_entity_id", "source_key", "type", "target_key")),
    (EntitySearch, ("entity_id", "key", "value")),
    (WebhookDelivery, ("integration_id", "delivery_id")),
]


def duplicate_rows() -> dict[str, list[dict]]:
    """Rows sharing a natural key, per model (empty when there are none): what a race between
    two writers that skip each other's rows would leave behind. Linked imports are checked
    per discovered record (one live link each)."""
    found: dict[str, list[dict]] = {}
    for model, key in _NATURAL_KEYS:
        parts = {f"k{i}": F(part) if isinstance(part, str) else part for i, part in enumerate(key)}
        rows = model.objects.values(**parts).annotate(copies=Count("pk")).filter(copies__gt=1)
        if rows:
            found[model.__name__] = list(rows[:10])
    links = (
        ImportedEntity.objects.filter(state="linked")
        .values("discovered_id")
        .annotate(copies=Count("pk"))
        .filter(copies__gt=1)
    )
    if links:
        found["ImportedEntity"] = list(links[:10])
    return found
