"""Coalescing over real sockets: signed deliveries posted to a live Lantern server while a full
sync holds the integration (its listing paused on a page) are refreshed by that sync before it
ends — on Bitbucket Cloud and Data Center, with tasks in process and on a real Celery worker.

A delivery is only a hint, so each test changes the repository in the sandbox first (its
description, after the listing read it) and checks that the catalog ends with the change.
"""

import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from django.core.cache import cache

from catalog.models import Entity
from integrations import services, tasks
from integrations.choices import SyncMode, SyncState
from integrations.engine.sync import integration_sync
from integrations.models import DiscoveredEntity, Integration, SyncRun, WebhookDelivery
from integrations.providers import registry
from integrations.providers.base import RepoRecord
from portal.celery import app as celery_app
from sandbox import SandboxServer
from tests.integrations.bitbucket_cloud.conftest import make_connector as cloud_connector
from tests.integrations.bitbucket_dc.conftest import make_connector as dc_connector
from tests.integrations.webhooks.conftest import payload, sign, webhook_url
from tests.reliability.process_helpers import celery_workers  # noqa: F401 - a fixture
from tests.sandbox.fixtures import (  # noqa: F401 - fixtures
    cloud_world_factory,
    dc_world_factory,
    make_cloud_sandbox,
    make_dc_sandbox,
)

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 30


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False
    cache.clear()  # client-side request budgets live in the cache
    yield
    cache.clear()


def sandbox_integration(kind: str, server: SandboxServer, **values) -> Integration:
    """An auto-importing integration over the sandbox, with no secondary kinds (the tests are
    about the repositories themselves)."""
    values.setdefault("auto_import", True)
    values.setdefault("secondary_kinds", [])
    if kind == "cloud":
        connector = cloud_connector(server, config={"requests_per_hour": 100_000})
        return services.integration_create(
            connector=connector, name="acme", target={"workspace": "acme"}, **values
        )
    return services.integration_create(
        connector=dc_connector(server), name="acme-dc", target={}, **values
    )


def workspace_of(server: SandboxServer) -> str:
    return "acme" if server.kind == "cloud" else next(iter(server.world.workspaces))


def describe(server: SandboxServer, record: RepoRecord, description: str) -> None:
    """Change a repository's description in the sandbox (what a delivery then announces)."""
    server.world.repository_update(
        workspace=workspace_of(server), slug=record.data["slug"], description=description
    )


def signed_delivery(integration: Integration, record: RepoRecord) -> tuple[bytes, dict]:
    """A real-shaped push delivery for the repository ``record`` is (``repo:push`` on Cloud,
    ``repo:refs_changed`` on Data Center), signed with the integration's secret."""
    data = record.data
    if integration.provider == "bitbucket_cloud":
        body = payload("bitbucket_cloud", "repo_push")
        body["repository"].update(uuid=data["uuid"], full_name=data["full_name"], name=data["name"])
        event, id_header = "repo:push", "X-Request-UUID"
    else:
        body = payload("bitbucket_dc", "repo_refs_changed")
        body["repository"].update(id=data["id"], slug=data["slug"], name=data["name"])
        body["repository"]["project"].update(key=data["project_key"])
        event, id_header = "repo:refs_changed", "X-Request-Id"
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": event,
        id_header: str(uuid.uuid4()),
        "X-Hub-Signature": sign(raw, integration.webhook_secret),
    }
    return raw, headers


def post(live_server, integration: Integration, record: RepoRecord) -> dict:
    raw, headers = signed_delivery(integration, record)
    response = httpx.post(
        live_server.url + webhook_url(integration), content=raw, headers=headers, timeout=30
    )
    assert response.status_code == 202, response.text
    return response.json()


def sync_with_pause(integration: Integration, during: Callable[[RepoRecord], None]) -> SyncRun:
    """A full sync whose listing stops after its first page to call ``during(first record)``
    (while the sync holds the claim and before it ends)."""
    provider = registry.for_integration(integration)
    listing = provider.iter_repositories
    provider.reads_in_background = lambda: False  # ``during`` runs in the sync's own thread

    def paused(since=None, **options):
        pages = listing(since=since, **options)
        first = next(pages)
        yield first
        during(first[0])
        yield from pages

    provider.iter_repositories = paused
    return integration_sync(
        integration_id=integration.pk, trigger="manual", full=True, provider=provider
    )


def on_worker(monkeypatch, queue: str) -> None:
    """Deliveries the live server records are published on Redis to ``queue`` (a real worker's)
    instead of running in process; undone after the test."""
    monkeypatch.setattr(
        tasks.webhook_delivery_process,
        "delay",
        lambda delivery_id: tasks.webhook_delivery_process.apply_async(
            args=(delivery_id,), queue=queue
        ),
    )
    celery_app.conf.task_always_eager = False  # restored by eager_restored


@pytest.fixture(autouse=True)
def eager_restored():
    eager = celery_app.conf.task_always_eager
    yield
    celery_app.conf.task_always_eager = eager


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS} s"
        time.sleep(0.05)


@pytest.fixture(params=["cloud", "dc"])
def sandbox(request, make_cloud_sandbox, make_dc_sandbox) -> SandboxServer:  # noqa: F811
    if request.param == "cloud":
        return make_cloud_sandbox(cloud_world_factory(3, repos=12, prs_per_repo=0))
    return make_dc_sandbox(dc_world_factory(3, repos=12, prs_per_repo=0), max_limit=5)


def assert_refreshed_by(run: SyncRun, integration: Integration, record: RepoRecord, text: str):
    row = DiscoveredEntity.objects.get(integration=integration, external_id=record.external_id)
    assert row.data["description"] == text
    assert row.state == "imported" and Entity.objects.filter(imports__discovered=row).exists()
    for delivery in WebhookDelivery.objects.filter(integration=integration):
        assert delivery.outcome == "processed", (delivery.outcome, delivery.detail)
        assert delivery.detail.startswith(f"Covered by run {run.pk}: "), delivery.detail


def test_delivery_during_a_full_sync_is_refreshed_by_that_sync_before_it_ends(sandbox, live_server):
    integration = sandbox_integration(sandbox.kind, sandbox)
    seen = {}

    def during(record: RepoRecord) -> None:
        describe(sandbox, record, "Changed while the sync ran")
        seen["answer"] = post(live_server, integration, record)
        seen["record"] = record
        delivery = WebhookDelivery.objects.get()
        holder = Integration.objects.get(pk=integration.pk).locked_by_run
        assert (delivery.outcome, delivery.detail) == (
            "coalesced",
            f"Waiting for run {holder}, which refreshes it before it ends",
        )

    run = sync_with_pause(integration, during)

    assert run.state == SyncState.SUCCEEDED, run.error
    assert seen["answer"]["outcome"] == "queued"  # the endpoint's answer: recorded and handed on
    assert_refreshed_by(run, integration, seen["record"], "Changed while the sync ran")
    # The sync did it itself: no repository run, no follow-up, the claim free.
    assert not SyncRun.objects.filter(mode=SyncMode.REPOSITORY).exists()
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None


def test_several_deliveries_for_one_repository_cause_one_refresh(sandbox, live_server):
    integration = sandbox_integration(sandbox.kind, sandbox)
    seen = {}

    def during(record: RepoRecord) -> None:
        seen["record"] = record
        for round_no in range(5):
            describe(sandbox, record, f"Change {round_no}")
            post(live_server, integration, record)
        sandbox.api.log.reset()

    run = sync_with_pause(integration, during)

    assert run.state == SyncState.SUCCEEDED, run.error
    assert WebhookDelivery.objects.count() == 5
    assert_refreshed_by(run, integration, seen["record"], "Change 4")
    single = [
        entry
        for entry in sandbox.api.log.entries()
        if entry.endpoint
        in ("GET /2.0/repositories/{workspace}/{repo_slug}", "GET /rest/api/1.0/repos/{id}")
        or entry.path.endswith(f"/repos/{seen['record'].data['slug']}")
    ]
    assert len(single) == 1, [entry.path for entry in single]


def test_delivery_during_a_full_sync_with_a_celery_worker_is_refreshed_by_that_sync(
    make_cloud_sandbox,  # noqa: F811
    live_server,
    celery_workers,  # noqa: F811
    monkeypatch,
):
    """The live server enqueues the delivery on Redis; a real worker marks it coalesced while
    the sync (in this process) holds the claim; the sync refreshes it before it ends."""
    sandbox = make_cloud_sandbox(cloud_world_factory(3, repos=12, prs_per_repo=0))
    integration = sandbox_integration("cloud", sandbox)
    worker = celery_workers(env={"LANTERN_OUTBOUND_ALLOWLIST": "127.0.0.1"})
    on_worker(monkeypatch, worker.queue)
    seen = {}

    def during(record: RepoRecord) -> None:
        seen["record"] = record
        describe(sandbox, record, "Changed while the sync ran")
        post(live_server, integration, record)

        def coalesced() -> bool:
            assert worker.process.poll() is None, worker.log_tail()
            return WebhookDelivery.objects.filter(outcome="coalesced").exists()

        wait_until(coalesced, "delivery marked coalesced by the worker")

    run = sync_with_pause(integration, during)

    assert run.state == SyncState.SUCCEEDED, run.error
    assert_refreshed_by(run, integration, seen["record"], "Changed while the sync ran")
    assert not SyncRun.objects.filter(mode=SyncMode.REPOSITORY).exists()
