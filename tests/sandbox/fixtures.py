"""Fixtures that start Bitbucket sandboxes on free loopback ports.

Import them where they are wanted (``from tests.sandbox.fixtures import cloud_sandbox,
make_cloud_sandbox``). The product's outbound guard refuses loopback unless the test allows it
(``settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]``).
"""

import pytest

from sandbox import SandboxServer, World

SANDBOX_TOKEN = "sandbox-token"
SANDBOX_SCOPES = ("repository", "pullrequest", "project", "account", "webhook")


def cloud_world_factory(
    seed: int = 7,
    *,
    workspaces: int = 1,
    projects: int = 3,
    repos: int = 24,
    prs_per_repo: int = 4,
    commits_per_repo: int = 5,
    token: str | None = SANDBOX_TOKEN,
) -> World:
    """A small deterministic world with a workspace access token (``sandbox-token``, the read
    scopes plus ``webhook``) on its first workspace."""
    world = World.generate(
        seed,
        workspaces=workspaces,
        projects=projects,
        repos=repos,
        prs_per_repo=prs_per_repo,
        commits_per_repo=commits_per_repo,
    )
    if token:
        first = next(iter(world.workspaces))
        world.credentials.add_access_token(
            token, workspace=first, scopes=SANDBOX_SCOPES, name="sandbox"
        )
    return world


@pytest.fixture
def make_cloud_sandbox():
    """Start Bitbucket Cloud sandboxes over given worlds; all are stopped after the test."""
    servers: list[SandboxServer] = []

    def make(world: World | None = None, **options) -> SandboxServer:
        server = SandboxServer(world or cloud_world_factory(), kind="cloud", **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def cloud_sandbox():
    """A Bitbucket Cloud sandbox over :func:`cloud_world_factory`'s world: ``.api_url`` is the
    client's base URL, ``.world`` the data, ``.api`` the faults, limits and logs."""
    with SandboxServer(cloud_world_factory(), kind="cloud", webhook_timeout=5.0) as server:
        yield server


# -- Bitbucket Data Center -----------------------------------------------------------------------

DC_TOKEN = "dc-sandbox-token"


def dc_world_factory(
    seed: int = 11,
    *,
    projects: int = 4,
    repos: int = 24,
    prs_per_repo: int = 3,
    commits_per_repo: int = 4,
    token: str | None = DC_TOKEN,
) -> World:
    """A small deterministic one-workspace world (the Data Center instance) with a personal
    access token (``dc-sandbox-token``) of its first user, PROJECT_READ on every project."""
    world = World.generate(
        seed,
        workspaces=1,
        projects=projects,
        repos=repos,
        prs_per_repo=prs_per_repo,
        commits_per_repo=commits_per_repo,
    )
    if token:
        world.credentials.dc.add_token(token, name="sandbox")
    return world


@pytest.fixture
def make_dc_sandbox():
    """Start Bitbucket Data Center sandboxes (HTTPS, each with its own private CA) over given
    worlds; all are stopped after the test."""
    servers: list[SandboxServer] = []

    def make(world: World | None = None, **options) -> SandboxServer:
        server = SandboxServer(world or dc_world_factory(), kind="dc", **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def dc_sandbox():
    """A Bitbucket Data Center sandbox over :func:`dc_world_factory`'s world: ``.url`` is the
    instance URL (HTTPS), ``.ca_pem`` the private CA to trust, ``.api`` the faults, limits, logs
    and settings (``.api.configure(version=...)``)."""
    with SandboxServer(dc_world_factory(), kind="dc", webhook_timeout=5.0) as server:
        yield server
