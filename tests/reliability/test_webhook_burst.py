"""A webhook burst: 200 signed deliveries for 140 repositories posted at once (16 threads) to the
live webhook endpoint, over a Bitbucket Cloud sandbox where every one of the 140 repositories
changed its description first. However the deliveries meet the integration's claim, each
repository is refreshed after its delivery: all 140 discovered rows end with the new
description, and no delivery is left queued, coalesced or skipped — with tasks in process (the
endpoint's own request threads do the refreshes) and with two real Celery workers on Redis.

PostgreSQL only (each server thread and worker has its own connection), Redis for the worker
variant; skipped otherwise, failing with ``CI=true``.
"""

import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.cache import cache

from integrations import tasks
from integrations.choices import SyncMode, SyncState
from integrations.models import DiscoveredEntity, Integration, SyncRun, WebhookDelivery
from portal.celery import app as celery_app
from sandbox import SandboxServer
from tests.integrations.engine.conftest import sync_ok
from tests.integrations.webhooks.conftest import cloud_push_delivery, webhook_url
from tests.reliability.process_helpers import (
    WORKSPACE,
    celery_workers,  # noqa: F401 - a fixture
    cloud_sandbox_integration,
    duplicate_rows,
    require_postgres,
)
from tests.sandbox.fixtures import cloud_world_factory

pytestmark = pytest.mark.django_db(transaction=True)

REPOS = 140
DELIVERIES = 200
THREADS = 16
WAIT_SECONDS = 45
REPOSITORY_READ = "GET /2.0/repositories/{workspace}/{repo_slug}"


@pytest.fixture(scope="module")
def module_sandbox():
    world = cloud_world_factory(19, repos=REPOS, prs_per_repo=0, commits_per_repo=1)
    with SandboxServer(world, kind="cloud") as server:
        server.api.rate_limits.configure(limits={})  # the burst's own reads, unthrottled
        yield server


@pytest.fixture
def sandbox(module_sandbox, settings):
    require_postgres()
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False
    cache.clear()  # client-side request budgets live in the cache
    eager = celery_app.conf.task_always_eager
    yield module_sandbox
    celery_app.conf.task_always_eager = eager
    module_sandbox.api.log.reset()
    cache.clear()


def burst(sandbox: SandboxServer, live_server, integration: Integration) -> dict[str, str]:
    """Change every repository's description, then post 200 deliveries (each repository once,
    60 of them twice, shuffled) concurrently; returns the new description per repository uuid."""
    repos = sorted(sandbox.world.iter_repositories(), key=lambda repo: repo.slug)
    assert len(repos) == REPOS
    expected = {}
    for repo in repos:
        expected[repo.uuid] = f"Burst change of {repo.slug}"
        sandbox.world.repository_update(
            workspace=WORKSPACE, slug=repo.slug, description=expected[repo.uuid]
        )
    targets = repos + repos[: DELIVERIES - REPOS]
    random.Random(5).shuffle(targets)
    sandbox.api.log.reset()

    def deliver(repo) -> int:
        raw, headers = cloud_push_delivery(integration, repo)
        return client.post(webhook_url(integration), content=raw, headers=headers).status_code

    with httpx.Client(base_url=live_server.url, timeout=WAIT_SECONDS) as client:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            statuses = list(pool.map(deliver, targets))
    assert statuses == [202] * DELIVERIES
    return expected


def wait_settled(integration: Integration, started: float, workers=()) -> float:
    """Seconds from the first post until no delivery is queued or coalesced."""
    pending = WebhookDelivery.objects.filter(
        integration=integration, outcome__in=["queued", "coalesced"]
    )
    while pending.exists():
        for worker in workers:
            assert worker.process.poll() is None, worker.log_tail()
        assert time.monotonic() - started < WAIT_SECONDS, (
            f"{pending.count()} deliveries still pending after {WAIT_SECONDS} s",
            [worker.log_tail(1500) for worker in workers],
        )
        time.sleep(0.1)
    return time.monotonic() - started


def assert_all_refreshed(sandbox, integration: Integration, expected: dict[str, str]) -> None:
    deliveries = WebhookDelivery.objects.filter(integration=integration)
    outcomes = {}
    for outcome, detail in deliveries.values_list("outcome", "detail"):
        outcomes.setdefault(outcome, []).append(detail)
    assert list(outcomes) == ["processed"], {k: v[:3] for k, v in outcomes.items()}
    assert deliveries.count() == DELIVERIES
    rows = dict(
        DiscoveredEntity.objects.filter(integration=integration).values_list(
            "external_id", "data__description"
        )
    )
    stale = {uid: rows.get(uid) for uid, text in expected.items() if rows.get(uid) != text}
    assert stale == {}, f"{len(stale)} of {REPOS} repositories not refreshed"
    # One read per repository, and at most one more for a repository named twice.
    reads = sandbox.api.log.count(REPOSITORY_READ)
    assert REPOS <= reads <= DELIVERIES, reads
    runs = SyncRun.objects.filter(integration=integration, mode=SyncMode.REPOSITORY)
    assert set(runs.values_list("state", flat=True)) == {SyncState.SUCCEEDED}
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None
    assert duplicate_rows() == {}


def test_burst_in_process_refreshes_all_140_repositories(sandbox, live_server):
    integration = cloud_sandbox_integration(sandbox, name="burst-in-process", secondary_kinds=[])
    sync_ok(integration)

    started = time.monotonic()
    expected = burst(sandbox, live_server, integration)
    elapsed = wait_settled(integration, started)

    assert_all_refreshed(sandbox, integration, expected)
    assert elapsed < WAIT_SECONDS


def test_burst_on_two_celery_workers_refreshes_all_140_repositories(
    sandbox,
    live_server,
    celery_workers,  # noqa: F811
    monkeypatch,
):
    integration = cloud_sandbox_integration(sandbox, name="burst-celery", secondary_kinds=[])
    sync_ok(integration)
    workers = [celery_workers(env={"LANTERN_OUTBOUND_ALLOWLIST": "127.0.0.1"}) for _ in range(2)]
    sent = iter(range(10**6))
    # The endpoint's enqueue publishes on Redis, to the two workers' queues in turn.
    monkeypatch.setattr(
        tasks.webhook_delivery_process,
        "delay",
        lambda delivery_id: tasks.webhook_delivery_process.apply_async(
            args=(delivery_id,), queue=workers[next(sent) % 2].queue
        ),
    )
    celery_app.conf.task_always_eager = False  # restored by the sandbox fixture

    started = time.monotonic()
    expected = burst(sandbox, live_server, integration)
    elapsed = wait_settled(integration, started, workers)

    assert_all_refreshed(sandbox, integration, expected)
    assert elapsed < WAIT_SECONDS
