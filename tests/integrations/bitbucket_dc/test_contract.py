"""The provider contract over the Bitbucket Data Center sandbox (HTTPS, private CA)."""

import json

import pytest

from integrations import services
from integrations.providers import registry
from integrations.providers.bitbucket_dc.provider import BitbucketDataCenterProvider
from tests.integrations.bitbucket_dc.conftest import make_connector, world
from tests.integrations.providers.contract import ContractSource, Delivery, ProviderContract
from tests.integrations.webhooks.conftest import payload

CATALOG_FILE = b"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: x\n"


def main_history(repo) -> list:
    return repo.history(repo.branches[repo.mainbranch])


def _delivery(event: str, fixture: str, repository: str | None) -> Delivery:
    body = json.dumps(payload("bitbucket_dc", fixture)).encode()
    return Delivery({"X-Event-Key": event, "X-Request-Id": "d-1"}, body, repository)


@pytest.fixture
def dc_source(db, sandbox):
    server = sandbox(world(24))
    repos = list(server.world.iter_repositories())
    with_prs = next(r for r in repos if r.mainbranch and len(r.pull_requests) > 1)
    with_commits = next(r for r in repos if r.mainbranch and len(main_history(r)) > 2)
    server.world.file_write(
        workspace=with_prs.workspace,
        slug=with_prs.slug,
        path="catalog-info.yaml",
        content=CATALOG_FILE.decode(),
    )
    good, bad = make_connector(server), make_connector(server, name="bad", token="no")

    def external_id(repo) -> str:
        return str(server.api.ids.get("repository", repo.uuid))

    def build(connector, **options):
        integration = services.Integration(connector=connector, provider=connector.provider)
        integration.target = {}
        options.setdefault("page_limit", 10)
        return registry.build(
            BitbucketDataCenterProvider, connector=connector, integration=integration, **options
        )

    return ContractSource(
        provider=lambda **options: build(good, **options),
        refused=lambda: build(bad),
        repositories={external_id(r): r.slug for r in repos},
        pull_requests=(external_id(with_prs), {str(i) for i in with_prs.pull_requests}),
        commits=(external_id(with_commits), [c.hash for c in main_history(with_commits)]),
        file=(external_id(with_prs), "catalog-info.yaml", CATALOG_FILE),
        faults=lambda kinds: server.api.faults.configure(script=kinds, retry_after=[0]),
        push=_delivery("repo:refs_changed", "repo_refs_changed", "84"),
        ignored=_delivery("diagnostics:ping", "diagnostics_ping", None),
    )


class TestBitbucketDataCenterContract(ProviderContract):
    @pytest.fixture
    def source(self, dc_source):
        return dc_source

    def test_the_contract_runs_against_the_data_center_provider(self, source):
        assert type(source.provider()) is BitbucketDataCenterProvider
