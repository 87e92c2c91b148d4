"""One Bitbucket hook per workspace (Cloud) or project (Data Center), shared by every
integration whose target is there: registered once, removed with the last integration, one
secret; each delivery recorded once per integration it concerns. Over real sockets: the
sandboxes keep the hooks and deliver to a live Lantern server."""

import json
import time
import uuid

import httpx
import pytest
from django.core.cache import cache

from integrations import services
from integrations.choices import IntegrationState, WebhookOutcome, WebhookRegistration
from integrations.models import Integration, WebhookDelivery, WebhookSubscription
from tests.integrations.bitbucket_cloud.conftest import make_connector as cloud_connector
from tests.integrations.bitbucket_dc.conftest import make_connector as dc_connector
from tests.integrations.webhooks.conftest import payload, sign
from tests.sandbox.fixtures import dc_sandbox  # noqa: F401 - a fixture
from tests.sandbox.helpers import first_repo

pytestmark = pytest.mark.django_db(transaction=True)

WS = "acme"
WAIT_SECONDS = 30


@pytest.fixture(autouse=True)
def shared_hooks(settings, live_server):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = True
    settings.BITBUCKET_DC_ENABLED = True
    settings.LANTERN_PUBLIC_URL = live_server.url
    cache.clear()
    yield
    cache.clear()


def cloud_integrations(server, *targets: dict) -> list[Integration]:
    connector = cloud_connector(server, config={"requests_per_hour": 100_000})
    return [
        services.integration_create(
            connector=connector,
            name=f"acme-{index}",
            target={"workspace": WS, **target},
            secondary_kinds=[],
        )
        for index, target in enumerate(targets)
    ]


def dc_integrations(server, *projects: list[str]) -> list[Integration]:
    connector = dc_connector(server)
    return [
        services.integration_create(
            connector=connector, name=f"dc-{index}", target={"projects": keys}, secondary_kinds=[]
        )
        for index, keys in enumerate(projects)
    ]


def lantern_hooks(server) -> list:
    return [hook for hook in server.api.hooks.values() if "/webhooks/" in hook.url]


def settle(server) -> None:
    assert server.api.webhooks.wait_idle(WAIT_SECONDS)
    for delivery in server.api.webhooks.deliveries():
        assert delivery.state == "delivered", delivery.attempts


def recorded_for(integration: Integration) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(integration=integration))


def wait_for(condition, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- Cloud -----------------------------------------------------------------------------------


def test_cloud_integrations_on_one_workspace_register_one_hook(cloud_sandbox):
    integrations = cloud_integrations(cloud_sandbox, {}, {}, {"repository_pattern": "^x"})
    (hook,) = lantern_hooks(cloud_sandbox)
    (subscription,) = WebhookSubscription.objects.all()
    assert hook.url == subscription.url
    assert hook.url.endswith(f"/webhooks/bitbucket-cloud/subscriptions/{subscription.pk}")
    assert hook.secret == subscription.secret and hook.repository is None
    assert subscription.scope_key == f"workspace:{WS}"
    assert sorted(subscription.integrations.values_list("pk", flat=True)) == sorted(
        integration.pk for integration in integrations
    )
    for integration in integrations:
        integration.refresh_from_db()
        assert integration.webhook_registration == WebhookRegistration.REGISTERED


def test_cloud_delivery_is_recorded_once_per_integration_it_concerns(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    everything, same, elsewhere = cloud_integrations(
        cloud_sandbox, {}, {"repository_pattern": f"^{repo.name}$"}, {"projects": ["NOPE"]}
    )
    cloud_sandbox.world.commits_push(workspace=WS, slug=repo.slug, message="Shared hook push")
    settle(cloud_sandbox)
    (one,) = recorded_for(everything)
    (two,) = recorded_for(same)
    assert recorded_for(elsewhere) == []
    assert one.delivery_id == two.delivery_id
    assert one.repository_external_id == repo.uuid
    deliveries = cloud_sandbox.api.webhooks.deliveries()
    assert len(deliveries) == 1  # one hook, so Bitbucket sent the event once


def test_cloud_redelivery_is_recorded_once_per_integration(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    first, second = cloud_integrations(cloud_sandbox, {}, {})
    for integration in (first, second):
        services.integration_suspend(integration=integration)  # keep the tasks out of it
        Integration.objects.filter(pk=integration.pk).update(state=IntegrationState.ENABLED)
    subscription = WebhookSubscription.objects.create(
        provider="bitbucket_cloud", host="", scope_key="workspace:redelivery"
    )
    subscription.secret = "shared-secret"
    subscription.save()
    subscription.integrations.add(first, second)
    body = payload("bitbucket_cloud", "repo_updated")
    body["repository"].update(uuid=repo.uuid, full_name=repo.full_name, name=repo.name)
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": "repo:fork",  # an event Lantern records but does not act on
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": sign(raw, "shared-secret"),
    }
    url = subscription.url
    answer = httpx.post(url, content=raw, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text
    assert sorted(answer.json()["integrations"]) == sorted([first.pk, second.pk])
    again = httpx.post(url, content=raw, headers=headers, timeout=30)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    for integration in (first, second):
        (row,) = recorded_for(integration)
        assert row.outcome == WebhookOutcome.IGNORED


def test_cloud_subscription_refuses_a_wrong_signature_and_records_nothing(cloud_sandbox):
    (integration,) = cloud_integrations(cloud_sandbox, {})
    (subscription,) = WebhookSubscription.objects.all()
    raw = json.dumps(payload("bitbucket_cloud", "repo_push")).encode()
    headers = {
        "X-Event-Key": "repo:push",
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": sign(raw, "not-the-secret"),
    }
    answer = httpx.post(subscription.url, content=raw, headers=headers, timeout=30)
    assert answer.status_code == 401
    assert "X-Hub-Signature" in answer.json()["error"]["message"]
    assert recorded_for(integration) == []
    subscription.refresh_from_db()
    assert subscription.rejected_count == 1


def test_cloud_hook_stays_until_the_last_integration_goes(cloud_sandbox):
    first, second, third = cloud_integrations(cloud_sandbox, {}, {}, {})
    (hook,) = lantern_hooks(cloud_sandbox)
    services.integration_delete(integration=first)
    services.integration_suspend(integration=second)
    assert [h.uuid for h in lantern_hooks(cloud_sandbox)] == [hook.uuid]
    (subscription,) = WebhookSubscription.objects.all()
    assert list(subscription.integrations.all()) == [third]
    services.integration_delete(integration=third)
    assert lantern_hooks(cloud_sandbox) == []
    assert not WebhookSubscription.objects.exists()
    services.integration_resume(integration=second)
    (again,) = lantern_hooks(cloud_sandbox)
    assert again.uuid != hook.uuid
    (subscription,) = WebhookSubscription.objects.all()
    assert again.url == subscription.url


def test_cloud_rotating_the_secret_updates_the_shared_hook_once(cloud_sandbox):
    first, second = cloud_integrations(cloud_sandbox, {}, {})
    (subscription,) = WebhookSubscription.objects.all()
    before = subscription.secret
    cloud_sandbox.api.log.reset()
    services.integration_webhook_secret_rotate(integration=first)
    subscription.refresh_from_db()
    (hook,) = lantern_hooks(cloud_sandbox)
    assert subscription.secret != before and hook.secret == subscription.secret
    writes = [e for e in cloud_sandbox.api.log.entries() if e.method in ("PUT", "POST")]
    assert len(writes) == 1, [(e.method, e.path) for e in writes]


def test_cloud_an_integration_with_its_own_hook_is_adopted(cloud_sandbox, settings):
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False
    (integration,) = cloud_integrations(cloud_sandbox, {})
    from integrations.providers import registry

    provider = registry.for_integration(integration)
    provider.ensure_webhook(integration.webhook_url, integration.webhook_secret)
    Integration.objects.filter(pk=integration.pk).update(
        webhook_registration=WebhookRegistration.REGISTERED
    )
    assert [h.url for h in lantern_hooks(cloud_sandbox)] == [integration.webhook_url]
    integration.refresh_from_db()
    assert services.integration_webhook_register(integration=integration) == "registered"
    (hook,) = lantern_hooks(cloud_sandbox)
    assert hook.url == WebhookSubscription.objects.get().url


# -- Data Center -----------------------------------------------------------------------------


def dc_repo_in(server, project_key: str):
    for repo in server.world.iter_repositories():
        if repo.project_key == project_key and repo.mainbranch is not None:
            return repo
    raise AssertionError(f"no repository in {project_key}")


def test_dc_one_hook_per_project_delivered_to_the_integrations_on_it(dc_sandbox):  # noqa: F811
    keys = sorted({repo.project_key for repo in dc_sandbox.world.iter_repositories()})
    p1, p2 = keys[0], keys[1]
    only_p1, both, only_p2 = dc_integrations(dc_sandbox, [p1], [p1, p2], [p2])
    hooks = lantern_hooks(dc_sandbox)
    assert sorted(hook.project for hook in hooks) == [p1, p2]
    subscriptions = {s.scope_key: s for s in WebhookSubscription.objects.all()}
    assert set(subscriptions) == {f"project:{p1}", f"project:{p2}"}
    assert sorted(subscriptions[f"project:{p1}"].integrations.values_list("pk", flat=True)) == (
        sorted([only_p1.pk, both.pk])
    )

    repo = dc_repo_in(dc_sandbox, p1)
    dc_sandbox.world.commits_push(workspace=repo.workspace, slug=repo.slug, message="DC push")
    settle(dc_sandbox)
    wait_for(lambda: len(recorded_for(only_p1)) == 1 and len(recorded_for(both)) == 1)
    assert recorded_for(only_p2) == []
    assert recorded_for(only_p1)[0].delivery_id == recorded_for(both)[0].delivery_id

    services.integration_delete(integration=only_p1)
    assert sorted(hook.project for hook in lantern_hooks(dc_sandbox)) == [p1, p2]
    services.integration_delete(integration=both)
    assert [hook.project for hook in lantern_hooks(dc_sandbox)] == [p2]


def test_the_webhooks_page_names_the_subscription_and_who_shares_it(
    cloud_sandbox, client, make_user
):
    first, second = cloud_integrations(cloud_sandbox, {}, {})
    (subscription,) = WebhookSubscription.objects.all()
    client.force_login(make_user("viewer"))
    body = client.get(f"/integrations/{first.pk}/webhooks/").content.decode()
    assert f'id="subscription-{subscription.pk}"' in body
    assert subscription.url in body and f"workspace:{WS}" in body
    assert second.name in body
    assert "Registered on the provider" in body


def test_dc_changing_the_projects_moves_the_integration_to_their_hooks(dc_sandbox):  # noqa: F811
    keys = sorted({repo.project_key for repo in dc_sandbox.world.iter_repositories()})
    (moving,) = dc_integrations(dc_sandbox, [keys[0]])
    assert [hook.project for hook in lantern_hooks(dc_sandbox)] == [keys[0]]
    services.integration_update(integration=moving, target={"projects": [keys[1]]})
    assert [hook.project for hook in lantern_hooks(dc_sandbox)] == [keys[1]]
    (subscription,) = WebhookSubscription.objects.all()
    assert subscription.scope_key == f"project:{keys[1]}"
    assert list(subscription.integrations.all()) == [moving]
