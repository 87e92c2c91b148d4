"""Fixtures for the Bitbucket Cloud provider tests: a sandbox on a real socket, a connector and
an integration pointing at it, fast retries, and a comparable snapshot of what a sync wrote."""

import pytest
from django.core.cache import cache

from integrations import services
from integrations.providers.bitbucket_cloud import client as client_module
from sandbox import World
from tests.integrations.providers import contract
from tests.sandbox.fixtures import SANDBOX_SCOPES, SANDBOX_TOKEN

WS = "acme"


@pytest.fixture(autouse=True)
def cloud_test_settings(settings, monkeypatch):
    """Loopback allowed, per-test request budgets, and retries that wait milliseconds."""
    contract.provider_test_settings(settings, monkeypatch, client_module, delays=(0.005, 0.02))
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
    return contract.snapshot(link_keys=("integration_id", "imported_at", "linked_entity_uid"))
