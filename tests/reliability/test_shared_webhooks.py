"""Shared webhooks under concurrency, on PostgreSQL (each thread has its own connection):
eight integrations of one workspace registering at the same moment register one hook at the
Cloud sandbox; concurrent deliveries and redeliveries to the shared subscription are recorded
exactly once per integration."""

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.cache import cache
from django.db import connection

from integrations import services
from integrations.models import Integration, WebhookDelivery, WebhookSubscription
from tests.integrations.bitbucket_cloud.conftest import make_connector as cloud_connector
from tests.integrations.webhooks.conftest import payload, sign
from tests.reliability.process_helpers import require_postgres
from tests.sandbox.helpers import first_repo

pytestmark = pytest.mark.django_db(transaction=True)

WS = "acme"
INTEGRATIONS = 8


@pytest.fixture
def workspace(cloud_sandbox, settings, live_server):
    require_postgres()
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False  # registered by the test's own threads
    settings.LANTERN_PUBLIC_URL = live_server.url
    cache.clear()
    connector = cloud_connector(cloud_sandbox, config={"requests_per_hour": 100_000})
    integrations = [
        services.integration_create(
            connector=connector, name=f"acme-{index}", target={"workspace": WS}
        )
        for index in range(INTEGRATIONS)
    ]
    yield cloud_sandbox, integrations
    cache.clear()


def in_threads(function, items) -> list:
    barrier = threading.Barrier(len(items))

    def run(item):
        barrier.wait()
        try:
            return function(item)
        finally:
            connection.close()

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(run, items))


def test_integrations_registering_at_once_register_one_hook(workspace):
    server, integrations = workspace

    def register(integration: Integration) -> str:
        fresh = Integration.objects.select_related("connector").get(pk=integration.pk)
        return services.integration_webhook_register(integration=fresh)

    assert in_threads(register, integrations) == ["registered"] * INTEGRATIONS
    hooks = [hook for hook in server.api.hooks.values() if "/webhooks/" in hook.url]
    (subscription,) = WebhookSubscription.objects.all()
    assert [hook.url for hook in hooks] == [subscription.url]
    assert subscription.integrations.count() == INTEGRATIONS


def test_concurrent_deliveries_and_redeliveries_are_recorded_once_per_integration(workspace):
    server, integrations = workspace
    subscription = WebhookSubscription.objects.create(
        provider="bitbucket_cloud", host="", scope_key=f"workspace:{WS}-burst"
    )
    subscription.secret = "burst-secret"
    subscription.save()
    subscription.integrations.add(*integrations)
    repo = first_repo(server)
    body = payload("bitbucket_cloud", "repo_updated")
    body["repository"].update(uuid=repo.uuid, full_name=repo.full_name, name=repo.name)
    raw = json.dumps(body).encode()
    delivery_ids = [str(uuid.uuid4()) for _ in range(6)]
    posts = [delivery_id for delivery_id in delivery_ids for _ in range(4)]  # 3 redeliveries

    def post(delivery_id: str) -> int:
        headers = {
            "Content-Type": "application/json",
            "X-Event-Key": "repo:fork",  # recorded, not acted on: no refresh in the burst
            "X-Request-UUID": delivery_id,
            "X-Hub-Signature": sign(raw, "burst-secret"),
        }
        return httpx.post(subscription.url, content=raw, headers=headers, timeout=30).status_code

    statuses = in_threads(post, posts)
    assert sorted(set(statuses)) in ([200, 202], [202])
    assert statuses.count(202) >= len(delivery_ids)
    rows = WebhookDelivery.objects.filter(integration__in=integrations)
    assert rows.count() == len(delivery_ids) * INTEGRATIONS
    for integration in integrations:
        recorded = sorted(
            rows.filter(integration=integration).values_list("delivery_id", flat=True)
        )
        assert recorded == sorted(delivery_ids)
