"""The provider contract over the Bitbucket Cloud sandbox."""

import json

import pytest

from integrations import services
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import client as client_module
from integrations.providers.bitbucket_cloud.provider import BitbucketCloudProvider
from sandbox import SandboxServer
from tests.integrations.bitbucket_cloud.conftest import WS, make_connector, world
from tests.integrations.providers.contract import ContractSource, Delivery, ProviderContract
from tests.integrations.webhooks.conftest import payload

CATALOG_FILE = b"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\n"


def main_history(repo) -> list:
    return repo.history(repo.branches[repo.mainbranch])


def _delivery(event: str, fixture: str, repository: str | None) -> Delivery:
    body = json.dumps(payload("bitbucket_cloud", fixture)).encode()
    return Delivery({"X-Event-Key": event, "X-Request-UUID": "d-1"}, body, repository)


@pytest.fixture
def cloud_source(db, monkeypatch):
    monkeypatch.setattr(client_module, "REPOSITORIES_PAGELEN", 10)
    server = SandboxServer(world(24), kind="cloud").start()
    repos = list(server.world.iter_repositories())
    with_prs = next(r for r in repos if r.mainbranch and len(r.pull_requests) > 1)
    with_commits = next(r for r in repos if r.mainbranch and len(main_history(r)) > 2)
    server.world.file_write(
        workspace=WS, slug=with_prs.slug, path="catalog-info.yaml", content=CATALOG_FILE.decode()
    )
    good, bad = make_connector(server), make_connector(server, name="bad", secrets={"token": "no"})
    target = {"workspace": WS}

    def build(connector, **options):
        integration = services.Integration(connector=connector, provider=connector.provider)
        integration.target = target
        return registry.build(
            BitbucketCloudProvider, connector=connector, integration=integration, **options
        )

    source = ContractSource(
        provider=lambda **options: build(good, **options),
        refused=lambda: build(bad),
        repositories={r.uuid: r.slug for r in repos},
        pull_requests=(with_prs.uuid, {str(i) for i in with_prs.pull_requests}),
        commits=(with_commits.uuid, [c.hash for c in main_history(with_commits)]),
        file=(with_prs.uuid, "catalog-info.yaml", CATALOG_FILE),
        faults=lambda kinds: server.api.faults.configure(script=kinds, retry_after=[0]),
        push=_delivery("repo:push", "repo_push", "{7c9e6679-7425-40de-944b-e07fc1f90ae7}"),
        ignored=_delivery("repo:fork", "repo_fork", None),
        target=target,
    )
    yield source
    server.stop()


class TestBitbucketCloudContract(ProviderContract):
    @pytest.fixture
    def source(self, cloud_source):
        return cloud_source

    def test_the_contract_runs_against_the_cloud_provider(self, source):
        assert type(source.provider()) is BitbucketCloudProvider
