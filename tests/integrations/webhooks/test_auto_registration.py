"""Lantern registers an enabled integration's hook itself, removes it on suspend and delete,
rotates its secret on both sides, and falls back to manual set-up without the webhook scope."""

import pytest

from integrations import services
from integrations.choices import WebhookRegistration
from integrations.models import Integration
from tests.sandbox.fixtures import SANDBOX_TOKEN

WS = "acme"


@pytest.fixture
def auto_register(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = True


def make_integration(server, token: str = SANDBOX_TOKEN) -> Integration:
    connector = services.connector_create(
        name=f"cloud-{token}",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=server.api_url,
        secrets={"token": token},
    )
    return services.integration_create(
        connector=connector, name=f"acme-{token}", target={"workspace": WS}
    )


def our_hooks(server, integration) -> list:
    """The hooks posting to the integration's own endpoint or a subscription it is on."""
    urls = {integration.webhook_url, *(s.url for s in integration.webhook_subscriptions.all())}
    return [hook for hook in server.api.hooks.values() if hook.url in urls]


@pytest.mark.django_db(transaction=True)
def test_enabling_registers_suspending_removes_resuming_registers_again(
    auto_register, cloud_sandbox
):
    integration = make_integration(cloud_sandbox)
    integration.refresh_from_db()
    assert integration.webhook_registration == WebhookRegistration.REGISTERED
    (hook,) = our_hooks(cloud_sandbox, integration)
    assert hook.secret == integration.webhook_subscriptions.get().secret

    services.integration_suspend(integration=integration)
    assert our_hooks(cloud_sandbox, integration) == []

    services.integration_resume(integration=integration)
    assert len(our_hooks(cloud_sandbox, integration)) == 1


@pytest.mark.django_db(transaction=True)
def test_rotating_the_secret_changes_it_on_the_provider_and_in_lantern(
    auto_register, cloud_sandbox
):
    integration = make_integration(cloud_sandbox)
    before = integration.webhook_secret, integration.webhook_subscriptions.get().secret
    services.integration_webhook_secret_rotate(integration=integration)
    integration.refresh_from_db()
    subscription = integration.webhook_subscriptions.get()
    assert integration.webhook_secret != before[0] and subscription.secret != before[1]
    (hook,) = our_hooks(cloud_sandbox, integration)
    assert hook.secret == subscription.secret


@pytest.mark.django_db(transaction=True)
def test_deleting_the_integration_removes_its_hook(auto_register, cloud_sandbox):
    integration = make_integration(cloud_sandbox)
    urls = {hook.url for hook in our_hooks(cloud_sandbox, integration)}
    assert urls
    services.integration_delete(integration=integration)
    assert [hook for hook in cloud_sandbox.api.hooks.values() if hook.url in urls] == []


@pytest.mark.django_db(transaction=True)
def test_without_the_webhook_scope_the_integration_asks_for_manual_set_up(
    auto_register, cloud_sandbox
):
    cloud_sandbox.world.credentials.add_access_token(
        "no-webhooks", workspace=WS, scopes=("repository", "pullrequest", "project"), name="ro"
    )
    integration = make_integration(cloud_sandbox, token="no-webhooks")
    integration.refresh_from_db()
    assert integration.webhook_registration == WebhookRegistration.MANUAL
    assert "webhook" in integration.webhook_registration_detail
    assert our_hooks(cloud_sandbox, integration) == []


@pytest.mark.django_db(transaction=True)
def test_the_delivery_log_lists_deliveries_newest_first_with_latency(
    make_user, bearer_client, auto_register, cloud_sandbox, django_assert_max_num_queries
):
    from datetime import timedelta

    from integrations.models import WebhookDelivery

    integration = make_integration(cloud_sandbox)
    first = WebhookDelivery.objects.create(
        integration=integration, delivery_id="a", event="repo:push", repository_name="svc"
    )
    WebhookDelivery.objects.filter(pk=first.pk).update(
        processed_at=first.received_at + timedelta(milliseconds=250), outcome="processed"
    )
    WebhookDelivery.objects.create(integration=integration, delivery_id="b", event="repo:updated")
    client = bearer_client(make_user("viewer"))
    with django_assert_max_num_queries(8):
        response = client.get(f"/api/integrations/{integration.pk}/webhooks/deliveries")
    body = response.json()
    assert [item["delivery_id"] for item in body["results"]] == ["b", "a"]
    assert body["results"][1]["latency_ms"] == 250
    assert body["results"][1]["outcome"] == "processed"
    detail = client.get(f"/api/integrations/{integration.pk}").json()
    assert detail["webhook_registration"] == "registered"
