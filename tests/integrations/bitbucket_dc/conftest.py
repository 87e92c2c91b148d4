"""Fixtures for the Bitbucket Data Center provider tests: the HTTPS sandbox with its private CA
on a real socket, a connector and an integration pointing at it, the feature flag on, loopback
allowed, fast retries, and a comparable snapshot of what a sync wrote."""

import pytest
from django.core.cache import cache

from integrations import services
from integrations.providers.bitbucket_dc import client as client_module
from sandbox import SandboxServer, World
from tests.integrations.providers import contract
from tests.sandbox.fixtures import DC_TOKEN, dc_world_factory


@pytest.fixture(autouse=True)
def dc_test_settings(settings, monkeypatch):
    """The provider enabled, loopback allowed, and retries that wait milliseconds."""
    settings.BITBUCKET_DC_ENABLED = True
    settings.LANTERN_PUBLIC_URL = "https://lantern.example"
    contract.provider_test_settings(settings, monkeypatch, client_module, delays=(0.002, 0.01))
    yield
    cache.clear()


def world(repos: int = 24, *, projects: int = 4, prs: int = 3, commits: int = 4, seed: int = 11):
    return dc_world_factory(
        seed, projects=projects, repos=repos, prs_per_repo=prs, commits_per_repo=commits
    )


@pytest.fixture
def sandbox():
    """``sandbox(world, **options)`` starts HTTPS sandboxes; ``sandbox.default`` is a running one
    over a 24-repository world. All stop after the test."""
    servers: list[SandboxServer] = []

    def make(w: World | None = None, **options) -> SandboxServer:
        server = SandboxServer(w or world(), kind="dc", **options).start()
        servers.append(server)
        return server

    make.default = make()
    yield make
    for server in servers:
        server.stop()


def make_connector(
    server,
    *,
    name: str = "dc",
    token: str = DC_TOKEN,
    ca_pem: str | None = None,
    base_url: str | None = None,
    auth_kind: str = "personal_access_token",
    secrets: dict | None = None,
    config: dict | None = None,
):
    return services.connector_create(
        name=name,
        provider="bitbucket_dc",
        auth_kind=auth_kind,
        base_url=server.url if base_url is None else base_url,
        secrets={"token": token} if secrets is None else secrets,
        config=config or {},
        ca_pem=server.ca_pem if ca_pem is None else ca_pem,
    )


def make_integration(connector, *, name: str = "dc", **values):
    values.setdefault("auto_import", True)
    return services.integration_create(connector=connector, name=name, **values)


def requests_of(server, endpoint: str | None = None) -> list:
    return [
        entry
        for entry in server.api.log.entries()
        if entry.path.startswith("/rest/api/") and (endpoint is None or entry.endpoint == endpoint)
    ]


def snapshot() -> dict:
    """Everything a sync wrote, without ids, timestamps of the run or generated uids."""
    return contract.snapshot(
        link_keys=("integration_id", "integration_name", "imported_at", "linked_entity_uid")
    )
