"""Process death: a real Celery worker (on Redis) is SIGKILLed in the middle of a sync.

The worker syncs a Bitbucket Cloud sandbox served from this process over real sockets. The
sandbox holds one request of a known page (its scripted ``slow`` fault, on only the listing or
only the pull-request requests), so the kill lands after a known number of pages: the run is
then left ``running`` and the integration claimed, as a dead worker leaves them. The worker runs
with a four-second claim TTL (a generated settings module), so the claim expires within seconds;
then the next run — the beat's, or a manual one taking the claim over — closes the dead run as
abandoned and completes, and the catalog is exactly the one a clean run gives.

PostgreSQL and Redis only (skipped otherwise, failing with ``CI=true``).
"""

import os
import signal
import time

import pytest
from django.core.cache import cache
from django.utils import timezone

from catalog.services import entities_upsert
from integrations.choices import SyncMode, SyncState, SyncTrigger
from integrations.models import DiscoveredEntity, Integration, PullRequest, SyncRun
from integrations.tasks import enqueue_due_integrations, sync_integration
from sandbox import SandboxServer
from tests.integrations.catalog_snapshot import assert_same_catalog, snapshot, wipe
from tests.integrations.conftest import component_doc
from tests.integrations.engine.conftest import sync, sync_ok
from tests.reliability.process_helpers import (
    celery_workers,  # noqa: F401 - a fixture
    cloud_sandbox_integration,
    duplicate_rows,
)
from tests.sandbox.fixtures import cloud_world_factory

REPOS = 120  # two listing pages (of 100 and 20)
WORKER_LOCK_TTL = 4  # seconds
WAIT_SECONDS = 60
LISTING = "GET /2.0/repositories/{workspace}"
PULL_REQUESTS = "GET /2.0/repositories/{workspace}/{repo_slug}/pullrequests"
SLOW_SECONDS = 30.0  # the held request: far longer than the test waits for the kill


@pytest.fixture(scope="module")
def module_sandbox():
    """One sandbox for the module, so the tests can share the clean-run catalog (it holds the
    sandbox's address)."""
    world = cloud_world_factory(11, repos=REPOS, prs_per_repo=3, commits_per_repo=2)
    with SandboxServer(world, kind="cloud") as server:
        server.api.rate_limits.configure(limits={"api-repositories": 100_000, "raw": 100_000})
        yield server


@pytest.fixture
def sandbox(module_sandbox, settings, transactional_db):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    cache.clear()  # client-side request budgets live in the cache
    yield module_sandbox
    module_sandbox.api.faults.reset()
    module_sandbox.api.log.reset()
    cache.clear()


def setup_catalog(server) -> Integration:
    """Two entities already in the catalog, named like repositories (so the sync merges), and
    the integration: auto-import, pull requests and commits."""
    slugs = sorted(repo.slug for repo in server.world.iter_repositories())
    entities_upsert(documents=[component_doc(slugs[3]), component_doc(slugs[-2], system="shop")])
    return cloud_sandbox_integration(server, secondary_kinds=["pull_requests", "commits"])


_clean_catalogs: dict[int, dict] = {}


def clean_catalog(server) -> dict:
    """The catalog a clean run over the sandbox gives (the catalog and the integration are
    wiped after it); computed once per sandbox."""
    key = id(server)
    if key not in _clean_catalogs:
        sync_ok(setup_catalog(server))
        _clean_catalogs[key] = snapshot()
        wipe()
        server.api.log.reset()
    clean = _clean_catalogs[key]
    assert len(clean["discovered"]) == REPOS and clean["pull_requests"] and clean["commits"]
    assert sorted(action for _, _, action, _ in clean["imports"]).count("MERGE") == 2
    return clean


def wait_for(condition, what: str, worker, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert worker.process.poll() is None, f"the worker exited:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s:\n{worker.log_tail()}"
        time.sleep(0.05)


def kill_mid_sync(server, start_worker, integration, *, path_pattern: str, held: int):
    """Start a worker, let its sync through ``held`` requests matching ``path_pattern``, hold
    the next one, and SIGKILL the worker while it waits; returns the dead worker's run."""
    server.api.faults.configure(
        path_pattern=path_pattern, script=[None] * held + ["slow"], slow_seconds=SLOW_SECONDS
    )
    worker = start_worker(
        env={"LANTERN_OUTBOUND_ALLOWLIST": "127.0.0.1"},
        settings_overrides={"LANTERN_SYNC_LOCK_TTL": WORKER_LOCK_TTL},
    )
    worker.send(sync_integration, integration.pk, SyncTrigger.SCHEDULE)
    wait_for(lambda: server.api.faults.injected["slow"] == 1, "held request", worker)

    run = SyncRun.objects.get(integration=integration)
    assert run.state == SyncState.RUNNING
    # While the worker lives, its claim keeps everyone else out (across processes).
    manual = sync(integration)
    assert manual.state == SyncState.SKIPPED
    assert f"Another sync (run {run.pk}) is running" in manual.message

    os.kill(worker.pid, signal.SIGKILL)
    assert worker.process.wait(timeout=10) == -signal.SIGKILL
    server.api.faults.reset()
    return run


def assert_left_claimed(integration: Integration, run: SyncRun) -> None:
    """What a dead worker leaves: its run running, the integration claimed by it."""
    run.refresh_from_db()
    assert (run.state, run.finished_at, run.error) == (SyncState.RUNNING, None, "")
    assert run.heartbeat_at is not None
    integration.refresh_from_db()
    assert integration.locked_by_run == run.pk
    # The claim lasts the worker's TTL after its last heartbeat, not the default ten minutes.
    assert integration.locked_until <= run.heartbeat_at + timezone.timedelta(
        seconds=WORKER_LOCK_TTL
    )


def wait_for_expiry(integration: Integration) -> None:
    deadline = time.monotonic() + WORKER_LOCK_TTL + 5
    while Integration.objects.get(pk=integration.pk).locked_until >= timezone.now():
        assert time.monotonic() < deadline, "the dead worker's claim never expired"
        time.sleep(0.1)


def assert_abandoned(run: SyncRun, *, by: str) -> None:
    run.refresh_from_db()
    assert run.state == SyncState.FAILED
    assert run.finished_at is not None
    assert run.error.startswith(
        "Abandoned: the worker running this sync stopped without finishing it (last heartbeat "
    ), run.error
    assert run.error.endswith(by), run.error


def test_killed_while_listing_then_the_beat_frees_the_claim_and_resyncs_to_a_clean_catalog(
    sandbox,
    celery_workers,  # noqa: F811
):
    clean = clean_catalog(sandbox)
    integration = setup_catalog(sandbox)

    listing = r"^/2\.0/repositories/[^/]+$"
    dead = kill_mid_sync(sandbox, celery_workers, integration, path_pattern=listing, held=1)

    assert_left_claimed(integration, dead)
    # One listing page served, and exactly its records written (and imported) before the kill.
    assert sandbox.api.log.count(LISTING) == 1
    assert DiscoveredEntity.objects.filter(integration=integration).count() == 100
    assert dead.mode == SyncMode.FULL
    wait_for_expiry(integration)

    # The next beat: it releases the expired claim, closes the dead run, and (the integration
    # still being due: the dead run never scheduled the next one) runs the sync again.
    assert enqueue_due_integrations() == 1

    assert_abandoned(dead, by="The scheduler released its claim.")
    rerun = SyncRun.objects.filter(integration=integration).exclude(pk=dead.pk).latest("pk")
    assert (rerun.state, rerun.trigger, rerun.mode) == (
        SyncState.SUCCEEDED,
        SyncTrigger.SCHEDULE,
        SyncMode.FULL,
    ), rerun.error
    integration.refresh_from_db()
    assert integration.locked_by_run is None
    assert duplicate_rows() == {}
    assert_same_catalog(clean, snapshot())


def test_killed_while_fetching_pull_requests_then_a_manual_sync_takes_over_cleanly(
    sandbox,
    celery_workers,  # noqa: F811
):
    clean = clean_catalog(sandbox)
    integration = setup_catalog(sandbox)

    dead = kill_mid_sync(
        sandbox, celery_workers, integration, path_pattern=r"/pullrequests$", held=5
    )

    assert_left_claimed(integration, dead)
    # The listing finished, five pages of pull requests were served; fetched pull requests are
    # written every 200 repositories, so none was yet.
    assert DiscoveredEntity.objects.filter(integration=integration).count() == REPOS
    assert sandbox.api.log.count(PULL_REQUESTS) == 5
    assert not PullRequest.objects.exists()
    wait_for_expiry(integration)

    # A manual sync (an admin's, in another process) takes the expired claim over.
    rerun = sync_ok(integration)

    assert_abandoned(dead, by=f"Run {rerun.pk} took over.")
    assert rerun.mode == SyncMode.INCREMENTAL  # the dead run had finished its listing
    integration.refresh_from_db()
    assert integration.locked_by_run is None
    assert duplicate_rows() == {}
    assert_same_catalog(clean, snapshot())
