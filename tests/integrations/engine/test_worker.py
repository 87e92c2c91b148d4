"""A real Celery worker, on the real Redis broker, runs a sync end to end.

Runs only with ``DATABASE_URL`` on PostgreSQL and ``CELERY_BROKER_URL`` on Redis (it is skipped
otherwise, and fails instead when ``CI=true``). The worker is a separate process: it gets the
fake provider through ``LANTERN_EXTRA_PROVIDERS`` and the world through a JSON file named in the
connector's config.
"""

import time
import uuid

import pytest

from integrations import services
from integrations.choices import SyncState
from integrations.models import Commit, DiscoveredEntity, PullRequest, SyncRun
from integrations.tasks import sync_integration
from tests.reliability.process_helpers import celery_workers  # noqa: F401 - a fixture

WAIT_SECONDS = 60


@pytest.fixture
def celery_worker_process(celery_workers):  # noqa: F811 - the fixture imported above
    """A worker that knows the fake provider."""
    return celery_workers(
        env={"LANTERN_EXTRA_PROVIDERS": "tests.integrations.fake_provider.FakeProvider"}
    )


@pytest.mark.django_db(transaction=True)
def test_celery_worker_on_redis_runs_a_sync_end_to_end(
    world, connector, make_integration, celery_worker_process, tmp_path
):
    worker = celery_worker_process
    log_path, process = worker.log_path, worker.process
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

    worker.send(sync_integration, integration.pk, "manual")

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
