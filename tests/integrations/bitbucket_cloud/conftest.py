"""Fixtures for the Bitbucket Cloud provider tests: a sandbox on a real socket, a connector and
an integration pointing at it, fast retries, and a comparable snapshot of what a sync wrote."""

import pytest
from django.core.cache import cache

from catalog.models import Entity
from catalog.rendering import entity_document
from integrations import services
from integrations.models import Commit, DiscoveredEntity, PullRequest
from integrations.providers.bitbucket_cloud import client as client_module
from integrations.providers.http import RetryPolicy
from sandbox import World
from tests.sandbox.fixtures import SANDBOX_SCOPES, SANDBOX_TOKEN

WS = "acme"


@pytest.fixture(autouse=True)
def cloud_test_settings(settings, monkeypatch):
    """Loopback allowed, per-test request budgets, and retries that wait milliseconds."""
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    cache.clear()  # the client-side budgets live in the cache, per credential and hour
    monkeypatch.setattr(
        client_module, "retry_policy", lambda: RetryPolicy(base_delay=0.005, max_delay=0.02)
    )
    yield
    cache.clear()


def world(repos: int = 24, *, prs: int = 3, commits: int = 4, seed: int = 7, **kwargs) -> World:
    """A generated world with the sandbox token on its first workspace (``acme``)."""
    result = World.generate(seed, repos=repos, prs_per_repo=prs, commits_per_repo=commits, **kwargs)
    result.credentials.add_access_token(SANDBOX_TOKEN, workspace=WS, scopes=SANDBOX_SCOPES)
    return result


def make_connector(
    server,
    *,
    name: str = "cloud",
    auth_kind: str = "workspace_access_token",
    secrets: dict | None = None,
    config: dict | None = None,
):
    return services.connector_create(
        name=name,
        provider="bitbucket_cloud",
        auth_kind=auth_kind,
        base_url=server.api_url,
        secrets={"token": SANDBOX_TOKEN} if secrets is None else secrets,
        config=config or {},
    )


def make_integration(connector, *, name: str = "acme", workspace: str = WS, **values):
    values.setdefault("auto_import", True)
    return services.integration_create(
        connector=connector,
        name=name,
        target={"workspace": workspace, **values.pop("target", {})},
        **values,
    )


def snapshot() -> dict:
    """Everything a sync wrote, without ids, timestamps of the run or generated uids."""

    def document(entity: Entity) -> dict:
        doc = entity_document(entity)
        doc["metadata"].pop("uid", None)
        doc["metadata"].pop("etag", None)
        for link in doc["metadata"].get("integration", []):
            for key in ("integration_id", "imported_at", "linked_entity_uid"):
                link.pop(key, None)
        return doc

    return {
        "entities": sorted(
            (document(e) for e in Entity.objects.all()), key=lambda d: d["metadata"]["name"]
        ),
        "discovered": sorted(
            DiscoveredEntity.objects.values_list(
                "external_id", "name", "state", "recommended_action", "data"
            )
        ),
        "pull_requests": sorted(
            PullRequest.objects.values_list(
                "discovered__external_id", "external_id", "state", "title", "updated_on"
            )
        ),
        "commits": sorted(
            Commit.objects.values_list("discovered__external_id", "hash", "date", "message")
        ),
    }
