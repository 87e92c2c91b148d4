"""Served by ``portal.wsgi.application``, a webhook delivery skips the session, authentication,
message, CSRF and allauth middleware and answers exactly as it would through all of them;
anything else under ``/webhooks/`` still gets the whole stack."""

import json
import uuid

import httpx
import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started

from integrations import tasks
from integrations.models import WebhookDelivery
from portal import wsgi
from tests.integrations.webhooks.conftest import payload, sign, webhook_url

pytestmark = pytest.mark.django_db(transaction=True)  # a WSGI handler manages connections

BODY = json.dumps(payload("bitbucket_cloud", "repo_push")).encode()


@pytest.fixture(autouse=True)
def enqueued(monkeypatch) -> list[int]:
    """The deliveries handed to the task (not run: its refresh would reach for Bitbucket)."""
    calls = []
    monkeypatch.setattr(tasks.webhook_delivery_process, "delay", calls.append)
    return calls


@pytest.fixture
def session_middleware_calls(monkeypatch) -> list[str]:
    """The paths SessionMiddleware saw (it runs for every request that gets the whole stack)."""
    calls = []
    real = SessionMiddleware.process_request

    def spy(self, request):
        calls.append(request.path)
        return real(self, request)

    monkeypatch.setattr(SessionMiddleware, "process_request", spy)
    return calls


def served_by(application) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=application), base_url="http://testserver"
    )


def post(client: httpx.Client, url: str, body: bytes = BODY, **headers) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": "repo:push",
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": sign(body),
        **headers,
    }
    return client.post(url, content=body, headers=headers)


def test_a_delivery_skips_the_middleware_with_nothing_to_do_for_it(
    cloud_integration, session_middleware_calls, enqueued
):
    response = post(served_by(wsgi.application), webhook_url(cloud_integration))
    assert response.status_code == 202, response.text
    assert session_middleware_calls == []
    assert enqueued == [WebhookDelivery.objects.get(outcome="queued").pk]


@pytest.mark.parametrize(
    "request_kind",
    ["accepted", "bad signature", "no such integration", "GET", "redelivery", "not JSON"],
)
def test_a_delivery_answers_as_through_the_whole_middleware(cloud_integration, request_kind):
    url = webhook_url(cloud_integration)
    if request_kind == "redelivery":
        first = post(served_by(WSGIHandler()), url, **{"X-Request-UUID": "the-same"})
        assert first.status_code == 202
    answers = []
    for application in (WSGIHandler(), wsgi.application):
        client = served_by(application)
        if request_kind == "accepted":
            response = post(client, url)
        elif request_kind == "bad signature":
            response = post(client, url, **{"X-Hub-Signature": "sha256=00"})
        elif request_kind == "no such integration":
            response = post(client, "/webhooks/bitbucket-cloud/999999")
        elif request_kind == "GET":
            response = client.get(url)
        elif request_kind == "redelivery":
            response = post(client, url, **{"X-Request-UUID": "the-same"})
        else:
            response = post(client, url, body=b'{"push": ', **{"X-Request-UUID": str(uuid.uuid4())})
        body = response.json() if request_kind != "GET" else response.text
        if isinstance(body, dict):
            body.pop("id", None)
            body.pop("delivery_id", None)
        answers.append((response.status_code, dict(response.headers), body))
    (status, headers, body), (lean_status, lean_headers, lean_body) = answers
    assert (lean_status, lean_body) == (status, body)
    if request_kind == "accepted":
        headers.pop("content-length"), lean_headers.pop("content-length")  # the row id differs
    assert lean_headers == headers
    assert lean_headers["x-frame-options"] == "DENY"
    assert lean_headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path", ["/webhooks/bitbucket-cloud/not-a-number", "/webhooks/", "/webhooks/gitlab/1"]
)
def test_other_paths_under_webhooks_get_the_whole_middleware(path, session_middleware_calls):
    response = post(served_by(wsgi.application), path)
    assert response.status_code == 404
    assert session_middleware_calls == [path]


def test_other_requests_get_the_whole_middleware(session_middleware_calls):
    assert served_by(wsgi.application).get("/healthz").status_code == 200
    assert session_middleware_calls == ["/healthz"]


def test_a_delivery_is_a_request_to_django(cloud_integration):
    """Connections are looked after as for any request: request_started and request_finished
    are sent (they close broken or expired database connections)."""
    signals = []

    def started(**kwargs):
        signals.append("started")

    def finished(**kwargs):
        signals.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        assert post(served_by(wsgi.application), webhook_url(cloud_integration)).status_code == 202
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert signals == ["started", "finished"]
