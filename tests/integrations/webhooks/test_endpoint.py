"""The endpoint refuses what it must before anything is parsed or stored, records each delivery
once, and hands work to the task only after the transaction commits."""

import hmac
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django.test import Client, RequestFactory

from integrations import tasks
from integrations import webhooks as webhook_views
from integrations.api.serializers import IntegrationSerializer
from integrations.choices import IntegrationState
from integrations.models import Integration, WebhookDelivery
from integrations.providers.bitbucket_cloud import webhooks as cloud_webhooks
from integrations.providers.bitbucket_cloud.provider import BitbucketCloudProvider
from tests.integrations.webhooks.conftest import deliver, payload, sign, webhook_url

PUSH = payload("bitbucket_cloud", "repo_push")
BODY = json.dumps(PUSH).encode()


@pytest.fixture
def parse_spy(monkeypatch):
    """Counts calls to the provider's parser: refused requests must never reach it."""
    calls = []
    real = cloud_webhooks.parse_webhook

    def spy(headers, body):
        calls.append(body)
        return real(headers, body)

    monkeypatch.setattr(cloud_webhooks, "parse_webhook", spy)
    return calls


def rejected(integration) -> int:
    return Integration.objects.get(pk=integration.pk).webhook_rejected_count


def refused(response, integration, status: int, parse_spy) -> None:
    assert response.status_code == status, response.content
    assert json.loads(response.content)["response"]["statusCode"] == status
    assert not WebhookDelivery.objects.exists()
    assert parse_spy == []


# -- signatures ----------------------------------------------------------------------------------


def test_correct_signature_is_accepted_and_queued(cloud_integration, parse_spy):
    response = deliver(cloud_integration, "repo:push", BODY)
    assert response.status_code == 202
    assert response.json()["outcome"] == "queued"
    assert WebhookDelivery.objects.get().outcome == "queued"
    assert rejected(cloud_integration) == 0


def test_missing_signature_is_refused(cloud_integration, parse_spy):
    response = deliver(cloud_integration, "repo:push", BODY, signature=None)
    refused(response, cloud_integration, 401, parse_spy)
    assert "missing" in response.json()["error"]["message"]
    assert rejected(cloud_integration) == 1


def test_wrong_secret_is_refused(cloud_integration, parse_spy):
    response = deliver(cloud_integration, "repo:push", BODY, signature=sign(BODY, "other"))
    refused(response, cloud_integration, 401, parse_spy)
    assert rejected(cloud_integration) == 1


def test_signature_over_a_different_body_is_refused(cloud_integration, parse_spy):
    other = json.dumps({**PUSH, "actor": None}).encode()
    response = deliver(cloud_integration, "repo:push", BODY, signature=sign(other))
    refused(response, cloud_integration, 401, parse_spy)


def test_wrong_algorithm_prefix_is_refused(cloud_integration, parse_spy):
    digest = sign(BODY).split("=", 1)[1]
    response = deliver(cloud_integration, "repo:push", BODY, signature=f"sha1={digest}")
    refused(response, cloud_integration, 401, parse_spy)


def test_bare_digest_without_prefix_is_refused(cloud_integration, parse_spy):
    digest = sign(BODY).split("=", 1)[1]
    response = deliver(cloud_integration, "repo:push", BODY, signature=digest)
    refused(response, cloud_integration, 401, parse_spy)


def test_integration_without_a_secret_refuses_everything(cloud_integration, parse_spy):
    cloud_integration.webhook_secret = ""
    cloud_integration.save()
    response = deliver(cloud_integration, "repo:push", BODY, signature=sign(BODY, ""))
    refused(response, cloud_integration, 401, parse_spy)


def test_signature_is_compared_in_constant_time(cloud_integration, monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(
        webhook_views.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b)
    )
    deliver(cloud_integration, "repo:push", BODY)
    deliver(cloud_integration, "repo:push", BODY, signature="sha256=00")
    deliver(cloud_integration, "repo:push", BODY, signature=None)
    assert len(calls) == 3
    assert calls[0][0] == sign(BODY).encode()


def test_each_integration_verifies_with_its_own_secret(cloud_integration, dc_integration):
    dc_integration.webhook_secret = "dc-only"
    dc_integration.save()
    body = json.dumps(payload("bitbucket_dc", "pr_opened")).encode()
    response = deliver(dc_integration, "pr:opened", body)  # signed with the Cloud secret
    assert response.status_code == 401
    assert (
        deliver(dc_integration, "pr:opened", body, signature=sign(body, "dc-only")).status_code
        == 202
    )


# -- size, existence, provider ------------------------------------------------------------------


def test_oversized_body_is_refused(cloud_integration, parse_spy):
    body = b'{"padding": "' + b"x" * (1024 * 1024) + b'"}'
    refused(deliver(cloud_integration, "repo:push", body), cloud_integration, 413, parse_spy)
    assert rejected(cloud_integration) == 1


def test_oversized_body_is_refused_even_when_content_length_understates_it(
    cloud_integration, parse_spy
):
    body = b"x" * (1024 * 1024 + 10)
    request = RequestFactory().post(
        webhook_url(cloud_integration),
        body,
        content_type="application/json",
        headers={"X-Hub-Signature": sign(body), "X-Request-UUID": "u-1"},
    )
    request.META["CONTENT_LENGTH"] = "10"
    request._stream = io.BytesIO(body)  # a client streaming more than it declared
    response = webhook_views.webhook_receive(
        request, integration_id=cloud_integration.pk, provider="bitbucket_cloud"
    )
    refused(response, cloud_integration, 413, parse_spy)


def test_body_of_exactly_the_limit_is_read(cloud_integration):
    body = json.dumps({**PUSH, "padding": ""}).encode()
    body = body[:-2] + b" " * (webhook_views.MAX_BODY - len(body)) + body[-2:]
    assert len(body) == webhook_views.MAX_BODY
    assert deliver(cloud_integration, "repo:push", body).status_code == 202


def test_unknown_integration_is_not_found(cloud_integration, parse_spy):
    response = deliver(cloud_integration, "repo:push", BODY, url="/webhooks/bitbucket-cloud/999999")
    refused(response, cloud_integration, 404, parse_spy)
    assert rejected(cloud_integration) == 0


def test_integration_id_beyond_any_database_id_is_not_found(cloud_integration, parse_spy):
    url = f"/webhooks/bitbucket-cloud/{2**63}"
    refused(
        deliver(cloud_integration, "repo:push", BODY, url=url), cloud_integration, 404, parse_spy
    )


@pytest.mark.django_db(transaction=True)
def test_a_delivery_for_an_integration_deleted_after_it_was_read_records_nothing(
    cloud_integration,
):
    found = webhook_views._integration_find(cloud_integration.pk, "bitbucket_cloud")
    Integration.objects.filter(pk=cloud_integration.pk).delete()
    recorded = webhook_views._record(
        found, delivery_id="{gone}", event="repo:push", outcome="queued"
    )
    assert recorded is None
    assert not WebhookDelivery.objects.exists()


def test_cloud_url_for_a_data_center_integration_is_not_found(dc_integration):
    url = f"/webhooks/bitbucket-cloud/{dc_integration.pk}"
    response = deliver(dc_integration, "pr:opened", "pr_opened", url=url)
    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()


def test_get_is_not_allowed(cloud_integration):
    assert Client().get(webhook_url(cloud_integration)).status_code == 405


# -- what a verified delivery becomes ------------------------------------------------------------


def test_suspended_integration_accepts_and_ignores(
    cloud_integration, django_capture_on_commit_callbacks
):
    Integration.objects.filter(pk=cloud_integration.pk).update(state=IntegrationState.SUSPENDED)
    with django_capture_on_commit_callbacks() as callbacks:
        response = deliver(cloud_integration, "repo:push", BODY)
    assert response.status_code == 202
    assert WebhookDelivery.objects.get().outcome == "ignored"
    assert callbacks == []


def test_suspended_integration_still_checks_the_signature(cloud_integration):
    Integration.objects.filter(pk=cloud_integration.pk).update(state=IntegrationState.SUSPENDED)
    assert deliver(cloud_integration, "repo:push", BODY, signature=None).status_code == 401


def test_unknown_event_is_accepted_and_recorded_as_ignored(cloud_integration):
    response = deliver(cloud_integration, "issue:created", {"issue": {"id": 1}})
    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.event) == ("ignored", "issue:created")


def test_malformed_json_after_a_valid_signature_is_refused_and_recorded(cloud_integration):
    response = deliver(cloud_integration, "repo:push", b'{"push": ', delivery_id="bad-1")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.delivery_id, delivery.outcome) == ("bad-1", "rejected")
    assert "not valid JSON" in delivery.detail


def test_missing_delivery_id_is_refused(cloud_integration):
    response = deliver(cloud_integration, "repo:push", BODY, extra={"X-Request-UUID": ""})
    assert response.status_code == 400
    assert "X-Request-UUID" in response.json()["error"]["message"]


def test_task_is_enqueued_only_when_the_transaction_commits(
    cloud_integration, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(tasks.webhook_delivery_process, "delay", enqueued.append)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deliver(cloud_integration, "repo:push", BODY)
        assert enqueued == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert enqueued == [WebhookDelivery.objects.get().pk]


def test_redelivery_is_acknowledged_and_processed_once(
    cloud_integration, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr(tasks.webhook_delivery_process, "delay", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(cloud_integration, "repo:push", BODY, delivery_id="same")
        again = deliver(cloud_integration, "repo:push", BODY, delivery_id="same")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["outcome"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1
    assert len(enqueued) == 1


def test_same_delivery_id_on_another_integration_is_its_own_delivery(
    cloud_integration, dc_integration
):
    deliver(cloud_integration, "repo:push", BODY, delivery_id="shared")
    deliver(dc_integration, "pr:opened", "pr_opened", delivery_id="shared")
    assert WebhookDelivery.objects.filter(delivery_id="shared").count() == 2


def test_webhook_url_in_the_api_is_the_endpoint(cloud_integration, dc_integration):
    for integration in (cloud_integration, dc_integration):
        url = IntegrationSerializer(integration).data["webhook_url"]
        assert url == "https://lantern.example" + webhook_url(integration)


# -- concurrency ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_deliveries_are_each_recorded_exactly_once(
    cloud_integration, live_server, monkeypatch
):
    if connection.vendor == "sqlite":
        pytest.skip(
            "needs PostgreSQL: the live server shares one in-memory SQLite connection between "
            "its threads, so concurrent writers cannot be tested on it (CI runs PostgreSQL)"
        )
    enqueued = []
    monkeypatch.setattr(tasks.webhook_delivery_process, "delay", enqueued.append)
    url = live_server.url + webhook_url(cloud_integration)

    def post(delivery_id: str) -> int:
        headers = {
            "Content-Type": "application/json",
            "X-Event-Key": "repo:push",
            "X-Request-UUID": delivery_id,
            "X-Hub-Signature": sign(BODY),
        }
        return client.post(url, content=BODY, headers=headers).status_code

    ids = [f"delivery-{n:03d}" for n in range(200)]
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(post, ids + ids))  # every delivery sent twice, concurrently
    assert sorted(set(statuses)) == [200, 202]
    assert statuses.count(202) == 200
    recorded = list(WebhookDelivery.objects.values_list("delivery_id", flat=True))
    assert sorted(recorded) == ids
    assert len(enqueued) == 200
    connection.close()


def test_a_static_parser_is_used_without_building_a_provider(cloud_integration, monkeypatch):
    monkeypatch.setattr(
        BitbucketCloudProvider, "parse_webhook", staticmethod(cloud_webhooks.parse_webhook)
    )
    monkeypatch.setattr(
        BitbucketCloudProvider, "__init__", lambda *args, **kwargs: pytest.fail("built")
    )
    assert deliver(cloud_integration, "repo:push", BODY).status_code == 202
