"""A real Celery worker, on the real Redis broker, runs a sync end to end.

Runs only with ``DATABASE_URL`` on PostgreSQL and ``CELERY_BROKER_URL`` on Redis (it is skipped
otherwise, and fails instead when ``CI=true``). The worker is a separate process: it gets the
fake provider through ``LANTERN_EXTRA_PROVIDERS`` and the world through a JSON file named in the
connector's config.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from integrations import services
from integrations.choices import SyncState
from integrations.models import Commit, DiscoveredEntity, PullRequest, SyncRun
from integrations.tasks import sync_integration
from portal.celery import app as celery_app

REPO_ROOT = Path(__file__).resolve().parents[3]
WAIT_SECONDS = 60


def _require_postgres_and_redis() -> None:
    missing = []
    if connection.vendor != "postgresql":
        missing.append("DATABASE_URL on PostgreSQL")
    if not str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://")):
        missing.append("CELERY_BROKER_URL on Redis")
    if missing:
        reason = "a real worker needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: this test must run)")
        pytest.skip(reason)


def _test_database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def celery_worker_process(tmp_path):
    """Start ``celery -A portal worker`` on a queue of its own; yields (queue, log path)."""
    _require_postgres_and_redis()
    queue = f"lantern-test-{uuid.uuid4().hex[:10]}"
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "LANTERN_EXTRA_PROVIDERS": "tests.integrations.fake_provider.FakeProvider",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
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
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield queue, log_path, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)


@pytest.mark.django_db(transaction=True)
def test_celery_worker_on_redis_runs_a_sync_end_to_end(
    world, connector, make_integration, celery_worker_process, tmp_path
):
    queue, log_path, process = celery_worker_process
    for index in range(5):
        world.add_repo(f"svc-{index}", prs=3, commits=2)
    world.pagelen = 2
    world_file = tmp_path / "world.json"
    world.save(world_file)
    services.connector_update(
        connector=connector,
        config={"world": f"not-in-the-worker-{uuid.uuid4().hex}", "world_file": str(world_file)},
    )
    integration = make_integration(auto_import=True)

    sync_integration.apply_async(args=[integration.pk, "manual"], queue=queue)

    deadline = time.monotonic() + WAIT_SECONDS
    run = None
    while time.monotonic() < deadline:
        run = SyncRun.objects.filter(integration=integration).first()
        if run is not None and run.state != SyncState.RUNNING:
            break
        if process.poll() is not None:
            break
        time.sleep(0.25)
    log = log_path.read_text(errors="replace")[-4000:]
    assert process.poll() is None, f"the worker exited ({process.returncode}):\n{log}"
    assert run is not None, f"no sync run within {WAIT_SECONDS} s; worker log:\n{log}"
    assert run.state == SyncState.SUCCEEDED, (run.state, run.error, log)
    assert run.trigger == "manual"
    assert (run.discovered, run.imported, run.pull_requests, run.commits) == (5, 5, 15, 10)
    assert sorted(
        DiscoveredEntity.objects.filter(integration=integration).values_list("name", flat=True)
    ) == [f"svc-{index}" for index in range(5)]
    assert PullRequest.objects.filter(discovered__integration=integration).count() == 15
    assert Commit.objects.filter(discovered__integration=integration).count() == 10
