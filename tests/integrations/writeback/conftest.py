"""Fixtures for write-back over real sockets: a Cloud sandbox and an HTTPS Data Center sandbox,
each with a writing and a read-only credential, connectors and integrations pointing at them
(through the services), providers built by the registry, fast retries and a clone cache of
the test's own."""

import httpx
import pytest
from django.core.cache import cache

from integrations import services
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import client as cloud_client
from integrations.providers.bitbucket_dc import client as dc_client
from integrations.providers.http import RetryPolicy
from sandbox import SandboxServer
from tests.sandbox.fixtures import DC_TOKEN, cloud_world_factory, dc_world_factory

CLOUD_WRITE_TOKEN = "cloud-write-token-0123456789"
CLOUD_READ_TOKEN = "cloud-read-token-0123456789"
DC_WRITE_TOKEN = "dc-write-token-0123456789"


@pytest.fixture(autouse=True)
def writeback_settings(settings, monkeypatch, tmp_path):
    """Loopback allowed, Data Center on, retries and write backoffs of milliseconds, and a
    clone cache under the test's folder."""
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.BITBUCKET_DC_ENABLED = True
    settings.LANTERN_GIT_CACHE_DIR = str(tmp_path / "git-cache")
    settings.LANTERN_GIT_CACHE_SECONDS = 300
    settings.LANTERN_GIT_CACHE_MAX_MB = 200
    settings.LANTERN_GIT_FALLBACK_THRESHOLD_MB = 50
    fast = lambda: RetryPolicy(base_delay=0.002, max_delay=0.01)  # noqa: E731
    monkeypatch.setattr(cloud_client, "retry_policy", fast)
    monkeypatch.setattr(dc_client, "retry_policy", fast)
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def cloud():
    world = cloud_world_factory()
    workspace = next(iter(world.workspaces))
    world.credentials.add_access_token(
        CLOUD_WRITE_TOKEN,
        workspace=workspace,
        scopes=("repository:write", "pullrequest:write", "project", "webhook"),
        name="writer",
    )
    world.credentials.add_access_token(
        CLOUD_READ_TOKEN, workspace=workspace, scopes=("repository", "pullrequest"), name="reader"
    )
    with SandboxServer(world, kind="cloud") as server:
        server.workspace = workspace
        yield server


@pytest.fixture
def dc():
    world = dc_world_factory()
    world.credentials.dc.add_token(DC_WRITE_TOKEN, permission="REPO_WRITE", name="writer")
    with SandboxServer(world, kind="dc") as server:
        yield server


def cloud_provider(server, token: str = CLOUD_WRITE_TOKEN, name: str = "cloud-writer"):
    connector = services.connector_create(
        name=name,
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=server.api_url,
        secrets={"token": token},
    )
    integration = services.integration_create(
        connector=connector, name=name, target={"workspace": server.workspace}
    )
    return registry.for_integration(integration)


def dc_provider(server, token: str = DC_WRITE_TOKEN, name: str = "dc-writer"):
    connector = services.connector_create(
        name=name,
        provider="bitbucket_dc",
        auth_kind="personal_access_token",
        base_url=server.url,
        secrets={"token": token},
        ca_pem=server.ca_pem,
    )
    integration = services.integration_create(connector=connector, name=name)
    return registry.for_integration(integration)


def control(server) -> httpx.Client:
    verify = True
    if getattr(server, "ca_pem", None):
        import ssl

        verify = ssl.create_default_context(cadata=server.ca_pem)
    return httpx.Client(base_url=f"{server.url}/_sandbox", verify=verify, timeout=10.0)


__all__ = ["DC_TOKEN", "cloud_provider", "control", "dc_provider"]
