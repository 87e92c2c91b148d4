"""Webhook test helpers: integrations of both providers with a known secret, real-shaped payload
fixtures, and signed posts to the endpoints."""

import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client

from integrations import services

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "lantern-webhook-secret"
URL_KIND = {"bitbucket_cloud": "bitbucket-cloud", "bitbucket_dc": "bitbucket-dc"}
DELIVERY_HEADER = {"bitbucket_cloud": "X-Request-UUID", "bitbucket_dc": "X-Request-Id"}


@pytest.fixture(autouse=True)
def webhook_test_settings(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.BITBUCKET_DC_ENABLED = True
    settings.LANTERN_PUBLIC_URL = "https://lantern.example"
    cache.clear()  # client-side request budgets live in the cache
    yield
    cache.clear()


def payload(provider: str, name: str) -> dict:
    return json.loads((FIXTURES / provider / f"{name}.json").read_text())


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_url(integration) -> str:
    return f"/webhooks/{URL_KIND[integration.provider]}/{integration.pk}"


def cloud_push_delivery(integration, repo) -> tuple[bytes, dict]:
    """A Cloud ``repo:push`` delivery for a sandbox repository, signed with the integration's
    secret, as (body, headers) for a real HTTP client."""
    body = payload("bitbucket_cloud", "repo_push")
    body["repository"].update(uuid=repo.uuid, full_name=repo.full_name, name=repo.name)
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Event-Key": "repo:push",
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": sign(raw, integration.webhook_secret),
    }
    return raw, headers


def deliver(
    integration,
    event: str,
    body: bytes | dict | str,
    *,
    delivery_id: str | None = None,
    signature: str | None = "sign",
    client: Client | None = None,
    url: str | None = None,
    extra: dict | None = None,
):
    """POST a delivery as Bitbucket would (``body`` may be a fixture name); the signature is
    computed over the exact bytes sent unless given (``None`` leaves the header out)."""
    if isinstance(body, str):
        body = payload(integration.provider, body)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "X-Event-Key": event,
        DELIVERY_HEADER[integration.provider]: delivery_id or str(uuid.uuid4()),
        **(extra or {}),
    }
    if signature == "sign":
        headers["X-Hub-Signature"] = sign(raw)
    elif signature is not None:
        headers["X-Hub-Signature"] = signature
    return (client or Client()).post(
        url or webhook_url(integration), raw, content_type="application/json", headers=headers
    )


def _with_secret(integration):
    integration.webhook_secret = SECRET
    integration.save(update_fields=["webhook_secret_encrypted"])
    return integration


@pytest.fixture
def cloud_integration(db):
    """A Bitbucket Cloud integration whose connector points nowhere reachable: endpoint tests
    never get as far as the API (tasks only run on commit)."""
    connector = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url="http://127.0.0.1:9/2.0",
        secrets={"token": "unused"},
    )
    integration = services.integration_create(
        connector=connector, name="acme-cloud", target={"workspace": "acme"}
    )
    return _with_secret(integration)


@pytest.fixture
def dc_integration(db):
    connector = services.connector_create(
        name="dc",
        provider="bitbucket_dc",
        auth_kind="personal_access_token",
        base_url="https://bitbucket.acme.test",
        secrets={"token": "unused"},
    )
    integration = services.integration_create(connector=connector, name="acme-dc", target={})
    return _with_secret(integration)
