"""The Bitbucket Cloud provider through the sync engine, against the sandbox over real sockets:
discovery at scale, catalog-info.yaml enrichment, every auth kind and its errors, incremental and
full listings, faults, pull requests and commits, caps and backfill, token pools."""

import math
from datetime import date
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from catalog.models import Entity
from catalog.services import entities_upsert
from integrations import services
from integrations.choices import (
    DiscoveredState,
    Health,
    ImportAction,
    SyncMode,
    SyncState,
)
from integrations.engine import secondary as secondary_module
from integrations.models import Commit, Connector, DiscoveredEntity, ImportedEntity, PullRequest
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import client as client_module
from integrations.providers.bitbucket_cloud.provider import BitbucketCloudProvider
from sandbox import READ_SCOPES, SandboxServer
from tests.integrations.bitbucket_cloud.conftest import (
    WS,
    make_connector,
    make_integration,
    snapshot,
    world,
)
from tests.integrations.engine.conftest import sync, sync_ok

LISTING = "GET /2.0/repositories/{workspace}"
REPO = "GET /2.0/repositories/{workspace}/{repo_slug}"
PROPERTY_FIELDS = {
    "name",
    "full_name",
    "url",
    "project_key",
    "project_name",
    "default_branch",
    "tags",
    "visibility",
    "language",
    "description",
    "created_on",
    "updated_on",
    "size",
    "uuid",
}


@pytest.fixture
def sandbox():
    """A sandbox over a fresh 24-repository world; ``make(world)`` starts others."""
    servers = []

    def make(w=None):
        server = SandboxServer(w or world(), kind="cloud").start()
        servers.append(server)
        return server

    make.default = make()
    yield make
    for server in servers:
        server.stop()


def main_history(repo) -> list:
    return repo.history(repo.branches[repo.mainbranch]) if repo.mainbranch else []


def requests_of(server) -> list:
    return [e for e in server.api.log.entries() if e.path.startswith("/2.0/")]


# -- discovery, correlation, import at scale ---------------------------------------------------


@pytest.mark.django_db
def test_300_repositories_in_3_projects_are_discovered_correlated_imported_with_properties(
    sandbox, reader_client
):
    server = sandbox(world(300, prs=3, commits=4))
    repos = {repo.uuid: repo for repo in server.world.iter_repositories()}
    assert len({repo.project_key for repo in repos.values()}) == 3
    existing = [r for r in repos.values() if r.name == r.slug][:5]
    entities_upsert(
        documents=[
            {
                "apiVersion": "backstage.io/v1alpha1",
                "kind": "Component",
                "metadata": {"name": repo.slug},
                "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
            }
            for repo in existing
        ]
    )
    integration = make_integration(make_connector(server, config={"requests_per_hour": 5000}))

    run = sync_ok(integration)

    assert run.discovered == 300 and run.imported == 300
    assert DiscoveredEntity.objects.filter(state=DiscoveredState.IMPORTED).count() == 300
    merged = ImportedEntity.objects.filter(action=ImportAction.MERGE)
    assert sorted(merged.values_list("entity__name", flat=True)) == sorted(r.slug for r in existing)
    assert ImportedEntity.objects.filter(action=ImportAction.REGISTER).count() == 295
    assert Entity.objects.count() == 300
    assert PullRequest.objects.count() == sum(len(r.pull_requests) for r in repos.values())
    assert Commit.objects.count() == sum(min(50, len(main_history(r))) for r in repos.values())
    # The minimum: 3 listing pages, then per non-empty repository one page each of pull
    # requests, commits and catalog-info.yaml.
    non_empty = sum(1 for r in repos.values() if r.mainbranch)
    assert run.requests == math.ceil(300 / 100) + 3 * non_empty

    repo = next(r for r in repos.values() if r.mainbranch and r.description and r.language)
    url = f"/api/catalog/entities/by-name/component/default/{repo.slug}?format=yaml"
    response = reader_client.get(url)
    assert response.status_code == 200, response.content
    document = yaml.safe_load(response.content)
    properties = document["integration_properties"]["BitbucketCloud"]
    assert PROPERTY_FIELDS <= set(properties)
    project = server.world.workspaces[WS].projects[repo.project_key]
    assert properties["uuid"] == repo.uuid
    assert properties["name"] == repo.name
    assert properties["full_name"] == f"{WS}/{repo.slug}"
    assert properties["url"].endswith(f"/{WS}/{repo.slug}")
    assert (properties["project_key"], properties["project_name"]) == (project.key, project.name)
    assert properties["default_branch"] == repo.mainbranch
    assert properties["tags"] == [repo.language]
    assert properties["visibility"] == ("private" if repo.is_private else "public")
    assert properties["language"] == repo.language
    assert properties["description"] == repo.description
    assert properties["size"] == repo.size
    assert properties["created_on"] and properties["updated_on"]
    assert document["metadata"]["labels"]["bitbucket.org/project"] == project.key
    annotations = document["metadata"]["annotations"]
    assert annotations["bitbucket.org/repo-url"] == properties["url"]
    assert annotations["backstage.io/source-location"] == (
        f"url:{properties['url']}/src/{repo.mainbranch}/"
    )
    merged_doc = yaml.safe_load(
        reader_client.get(
            f"/api/catalog/entities/by-name/component/default/{existing[0].slug}?format=yaml"
        ).content
    )
    assert merged_doc["metadata"]["integration"][0]["action"] == "MERGE"
    assert merged_doc["spec"]["owner"] == "team-a"  # a merge fills only what is empty
    assert merged_doc["integration_properties"]["BitbucketCloud"]["uuid"] == existing[0].uuid


@pytest.mark.django_db
def test_catalog_info_yaml_metadata_comes_before_the_repositorys_own_fields(sandbox):
    server = sandbox.default
    repos = [r for r in server.world.iter_repositories() if r.mainbranch and r.language]
    with_file, without_file = repos[0], repos[1]
    server.world.file_write(
        workspace=WS,
        slug=with_file.slug,
        path="catalog-info.yaml",
        content=(
            "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
            "metadata:\n  name: whatever\n  description: From the file\n"
            "  tags: [payments, critical]\n"
            "spec:\n  type: service\n  owner: team-ledger\n  lifecycle: experimental\n"
            "  system: money\n"
        ),
    )
    server.world.commit_create(
        workspace=WS, slug=without_file.slug, files={"catalog-info.yaml": None}
    )
    server.world.repository_update(workspace=WS, slug=without_file.slug, description="Repo text")
    integration = make_integration(make_connector(server))

    sync_ok(integration)

    enriched = Entity.objects.get(name=with_file.slug)
    assert enriched.owner == "team-ledger"
    assert enriched.lifecycle == "experimental"
    assert enriched.system == "money"
    assert enriched.description == "From the file"
    assert enriched.tags == ["payments", "critical"]
    plain = Entity.objects.get(name=without_file.slug)
    assert plain.description == "Repo text"
    assert plain.tags == [without_file.language]
    assert plain.owner == "unknown" and plain.lifecycle == "production" and not plain.system

    # A change to the file follows on the next (incremental) run.
    server.world.file_write(
        workspace=WS,
        slug=with_file.slug,
        path="catalog-info.yaml",
        content="kind: Component\nmetadata: {name: x}\nspec: {owner: team-new}\n",
    )
    assert sync_ok(integration).mode == SyncMode.INCREMENTAL
    assert Entity.objects.get(name=with_file.slug).owner == "team-new"


@pytest.mark.django_db
def test_listing_is_limited_to_the_chosen_projects_and_repository_name_pattern(sandbox):
    server = sandbox.default
    integration = make_integration(
        make_connector(server),
        target={"projects": ["PLAT"], "repository_pattern": r"-(service|api)$"},
        secondary_kinds=[],
    )
    sync_ok(integration)
    expected = {
        r.uuid
        for r in server.world.iter_repositories()
        if r.project_key == "PLAT" and (r.name.endswith("-service") or r.name.endswith("-api"))
    }
    assert expected
    assert set(DiscoveredEntity.objects.values_list("external_id", flat=True)) == expected
    (listing,) = [e for e in requests_of(server) if e.endpoint == LISTING]
    assert dict(listing.query)["q"] == '(project.key="PLAT")'
    # A repository read on its own (a webhook's) is checked against the same filters.
    provider = registry.build(
        BitbucketCloudProvider, connector=integration.connector, integration=integration
    )
    outside = next(r for r in server.world.iter_repositories() if r.uuid not in expected)
    inside = server.world.repository(WS, next(iter(expected)))
    assert not provider.in_target(provider.get_repository(outside.uuid))
    assert provider.in_target(provider.get_repository(inside.uuid))


# -- authentication ------------------------------------------------------------------------------


def _authorization_code(server, client_id: str, secret: str) -> dict:
    redirect = httpx.get(
        f"{server.url}/site/oauth2/authorize",
        params={"client_id": client_id, "response_type": "code"},
    )
    code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
    response = httpx.post(
        f"{server.url}/site/oauth2/access_token",
        data={"grant_type": "authorization_code", "code": code},
        auth=(client_id, secret),
    )
    return response.json()


def _auth_setup(kind: str, server) -> dict:
    """Connector arguments for one auth kind, with the sandbox credential it needs."""
    credentials = server.world.credentials
    member = server.world.account(server.world.workspaces[WS].members[0])
    if kind == "workspace_access_token":
        return {"auth_kind": kind, "secrets": {"token": "sandbox-token"}}
    if kind == "token_pool":
        credentials.add_access_token("second-token", workspace=WS, scopes=READ_SCOPES)
        return {
            "auth_kind": "workspace_access_token",
            "secrets": {"tokens": ["sandbox-token", "second-token"]},
        }
    if kind == "api_token":
        credentials.add_api_token(email=member.email, token="api-secret", scopes=READ_SCOPES)
        return {
            "auth_kind": kind,
            "secrets": {"token": "api-secret"},
            "config": {"email": member.email},
        }
    if kind == "app_password":
        credentials.settings.app_passwords_enabled = True
        credentials.add_app_password(username=member.nickname, password="app-secret")
        return {
            "auth_kind": kind,
            "secrets": {"app_password": "app-secret"},
            "config": {"username": member.nickname},
        }
    if kind == "oauth_code":
        credentials.add_oauth_consumer(
            client_id="lantern", secret="consumer-secret", callback_url="http://localhost:9/cb"
        )
        tokens = _authorization_code(server, "lantern", "consumer-secret")
        return {
            "auth_kind": "oauth_consumer",
            "secrets": {"client_secret": "consumer-secret", **tokens},
            "config": {"client_id": "lantern"},
        }
    assert kind == "oauth_client_credentials"
    credentials.add_oauth_consumer(
        client_id="lantern", secret="consumer-secret", callback_url="http://localhost:9/cb"
    )
    return {
        "auth_kind": "oauth_consumer",
        "secrets": {"client_secret": "consumer-secret"},
        "config": {"client_id": "lantern"},
    }


def _connector(server, kind: str):
    setup = _auth_setup(kind, server)
    secrets = setup["secrets"]
    if setup["auth_kind"] == "oauth_consumer":
        secrets = {k: v for k, v in secrets.items() if k in ("client_secret", "refresh_token")}
    return make_connector(
        server, auth_kind=setup["auth_kind"], secrets=secrets, config=setup.get("config")
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kind",
    [
        "workspace_access_token",
        "token_pool",
        "api_token",
        "app_password",
        "oauth_code",
        "oauth_client_credentials",
    ],
)
def test_each_auth_kind_probes_and_syncs_the_workspace(sandbox, kind):
    server = sandbox(world(12, prs=1, commits=2))
    integration = make_integration(_connector(server, kind))
    provider = registry.build(
        BitbucketCloudProvider, connector=integration.connector, integration=integration
    )
    probe = provider.probe()
    assert probe.ok, probe.message
    assert probe.message == "Connected to workspace acme (12 repositories visible)"
    run = sync_ok(integration)
    assert run.discovered == 12
    used = {e.credential for e in requests_of(server) if e.credential}
    expected_kinds = {
        "workspace_access_token": "workspace-token",
        "token_pool": "workspace-token",
        "api_token": "api-token",
        "app_password": "app-password",
        "oauth_code": "oauth-consumer",
        "oauth_client_credentials": "oauth-consumer",
    }
    assert {credential.rsplit("-", 1)[0] for credential in used} == {expected_kinds[kind]}


@pytest.mark.django_db
def test_an_app_password_is_refused_as_retired_when_bitbucket_no_longer_accepts_them(sandbox):
    server = sandbox.default
    member = server.world.account(server.world.workspaces[WS].members[0])
    server.world.credentials.add_app_password(username=member.nickname, password="app-secret")
    assert server.world.credentials.settings.app_passwords_enabled is False
    connector = make_connector(
        server,
        auth_kind="app_password",
        secrets={"app_password": "app-secret"},
        config={"username": member.nickname},
    )
    integration = make_integration(connector)
    probe = registry.build(
        BitbucketCloudProvider, connector=connector, integration=integration
    ).probe()
    assert not probe.ok
    assert "retired app passwords on 2026-06-09" in probe.message
    assert "API token" in probe.message
    run = sync(integration)
    assert run.state == SyncState.FAILED and run.error.startswith("Authentication failed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_token", "The access token was refused"),
        ("wrong_api_token", "The account e-mail or API token was refused"),
        ("no_project_scope", "lacks the scope project (Projects: Read)"),
        ("no_pullrequest_scope", "lacks the scope pullrequest (Pull requests: Read)"),
        ("unknown_workspace", "No workspace 'nowhere' is visible to this connector"),
        ("other_workspace", "No workspace 'globex' is visible to this connector"),
    ],
)
def test_probe_errors_say_what_is_wrong(sandbox, case, expected):
    server = sandbox(world(6, prs=1, commits=1, workspaces=2))
    credentials = server.world.credentials
    workspace = WS
    auth = {"secrets": {"token": "sandbox-token"}}
    if case == "wrong_token":
        auth = {"secrets": {"token": "not-a-token"}}
    elif case == "wrong_api_token":
        member = server.world.account(server.world.workspaces[WS].members[0])
        credentials.add_api_token(email=member.email, token="right")
        auth = {
            "auth_kind": "api_token",
            "secrets": {"token": "wrong"},
            "config": {"email": member.email},
        }
    elif case == "no_project_scope":
        credentials.add_access_token("repo-only", workspace=WS, scopes=("repository",))
        auth = {"secrets": {"token": "repo-only"}}
    elif case == "no_pullrequest_scope":
        credentials.add_access_token("no-prs", workspace=WS, scopes=("project", "repository"))
        auth = {"secrets": {"token": "no-prs"}}
    elif case == "unknown_workspace":
        workspace = "nowhere"
    else:
        workspace = "globex"  # exists, but the token belongs to acme
    connector = make_connector(server, **auth)
    integration = make_integration(connector, workspace=workspace)
    probe = registry.build(
        BitbucketCloudProvider, connector=connector, integration=integration
    ).probe()
    assert not probe.ok
    assert expected in probe.message, probe.message
    if case.startswith("no_"):
        assert probe.details["missing_scope"] in probe.message


@pytest.mark.django_db
def test_an_expired_oauth_access_token_is_refreshed_and_the_new_one_stored(sandbox):
    server = sandbox.default
    integration = make_integration(_connector(server, "oauth_code"), secondary_kinds=[])
    sync_ok(integration)
    first_token = Connector.objects.get().secrets["access_token"]
    server.world.clock.advance(7201)  # Bitbucket's tokens live two hours
    server.api.log.reset()

    run = sync_ok(integration)

    log = server.api.log.entries()
    assert [(e.endpoint, e.status) for e in log[:3]] == [
        (LISTING, 401),
        ("POST /site/oauth2/access_token", 200),
        (LISTING, 200),
    ]
    assert run.state == SyncState.SUCCEEDED
    stored = Connector.objects.get().secrets
    assert stored["access_token"] != first_token and stored["refresh_token"]


@pytest.mark.django_db
def test_a_refused_oauth_refresh_marks_the_connector_down_with_the_reason(sandbox):
    server = sandbox.default
    integration = make_integration(_connector(server, "oauth_code"), secondary_kinds=[])
    sync_ok(integration)
    connector = Connector.objects.get()
    server.world.credentials.revoke_refresh_token(connector.secrets["refresh_token"])
    server.world.clock.advance(7201)

    run = sync(integration)

    assert run.state == SyncState.FAILED
    assert "refresh was refused (Invalid refresh_token)" in run.error
    connector.refresh_from_db()
    assert connector.health == Health.DOWN
    assert "Invalid refresh_token" in connector.last_error
    assert "reconnect" in connector.last_error
    probe = registry.build(
        BitbucketCloudProvider, connector=connector, integration=integration
    ).probe()
    assert not probe.ok and "refresh was refused" in probe.message


# -- incremental and full listings ---------------------------------------------------------------


@pytest.mark.django_db
def test_an_unchanged_incremental_sync_makes_at_most_two_requests(
    sandbox, django_assert_max_num_queries
):
    server = sandbox.default
    integration = make_integration(make_connector(server))
    first = sync_ok(integration)
    assert first.mode == SyncMode.FULL and first.discovered == 24
    server.api.log.reset()

    # A fixed number of queries, whatever the number of repositories and entities (one query
    # per entity would add 24 here).
    with django_assert_max_num_queries(30):
        second = sync_ok(integration)

    assert second.mode == SyncMode.INCREMENTAL
    log = requests_of(server)
    assert len(log) <= 2 and second.requests == len(log)
    assert {e.endpoint for e in log} == {LISTING}
    query = dict(log[0].query)
    assert query["sort"] == "-updated_on" and query["q"].startswith("updated_on > ")


@pytest.mark.django_db
def test_after_one_repository_changes_only_it_is_refetched(sandbox):
    server = sandbox.default
    integration = make_integration(make_connector(server))
    sync_ok(integration)
    repo = next(r for r in server.world.iter_repositories() if r.mainbranch and r.pull_requests)
    (pushed,) = server.world.commits_push(workspace=WS, slug=repo.slug, message="Fix it")
    server.world.pullrequest_open(workspace=WS, slug=repo.slug, title="New", source="feature/x")
    server.api.log.reset()

    run = sync_ok(integration)

    log = requests_of(server)
    assert sorted(e.endpoint for e in log) == sorted(
        [
            LISTING,
            f"{REPO}/pullrequests",
            f"{REPO}/commits/{{revision:path}}",
            f"{REPO}/src/{{commit}}/{{path:path}}",
        ]
    )
    # Each secondary request is about the changed repository (addressed by its uuid).
    assert {e.path.split("/")[4] for e in log if e.endpoint != LISTING} == {repo.uuid}
    assert run.discovered == 0 and run.commits >= 1 and run.pull_requests == 1
    discovered = DiscoveredEntity.objects.get(external_id=repo.uuid)
    assert Commit.objects.filter(discovered=discovered, hash=pushed.hash).exists()
    assert PullRequest.objects.filter(discovered=discovered, title="New").exists()


@pytest.mark.django_db
def test_a_full_listing_marks_a_deleted_repository_gone_and_keeps_its_entity(sandbox):
    server = sandbox.default
    integration = make_integration(make_connector(server))
    sync_ok(integration)
    repo = next(server.world.iter_repositories())
    server.world.repository_delete(workspace=WS, slug=repo.slug)

    incremental = sync_ok(integration)
    assert incremental.mode == SyncMode.INCREMENTAL and incremental.gone == 0
    full = sync_ok(integration, full=True)

    assert full.mode == SyncMode.FULL and full.gone == 1
    row = DiscoveredEntity.objects.get(external_id=repo.uuid)
    assert row.state == DiscoveredState.GONE
    assert Entity.objects.filter(name=repo.slug).exists()
    assert DiscoveredEntity.objects.exclude(state=DiscoveredState.GONE).count() == 23


@pytest.mark.django_db
def test_a_renamed_repository_keeps_its_identity_by_uuid(sandbox):
    server = sandbox.default
    integration = make_integration(make_connector(server))
    sync_ok(integration)
    repo = next(r for r in server.world.iter_repositories() if r.pull_requests)
    before = DiscoveredEntity.objects.get(external_id=repo.uuid)
    entity = ImportedEntity.objects.get(discovered=before).entity
    prs = PullRequest.objects.filter(discovered=before).count()
    old_slug = repo.slug

    server.world.repository_update(workspace=WS, slug=repo.slug, name="Renamed Thing")
    sync_ok(integration)
    sync_ok(integration, full=True)

    after = DiscoveredEntity.objects.get(external_id=repo.uuid)
    assert after.pk == before.pk and after.name == "renamed-thing"
    assert after.state == DiscoveredState.IMPORTED
    assert DiscoveredEntity.objects.count() == 24  # no new record, none gone
    assert not DiscoveredEntity.objects.filter(name=old_slug).exists()
    entity.refresh_from_db()
    assert entity.name == old_slug  # the catalog name is the entity's identity: it stays
    props = entity.integration_properties["BitbucketCloud"]
    assert props["name"] == "Renamed Thing" and props["full_name"] == f"{WS}/renamed-thing"
    assert PullRequest.objects.filter(discovered=after).count() == prs


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_ten_percent_injected_faults_the_sync_gives_the_catalog_of_a_clean_run(
    sandbox, monkeypatch
):
    server = sandbox(world(120, prs=3, commits=3, seed=11))
    sync_ok(make_integration(make_connector(server)))
    clean = snapshot()
    clean_requests = len(requests_of(server))
    services.integration_delete(integration=services.Integration.objects.get())
    Connector.objects.all().delete()
    Entity.objects.all().delete()
    assert not DiscoveredEntity.objects.exists() and not PullRequest.objects.exists()

    monkeypatch.setattr(client_module, "REQUEST_TIMEOUT", 0.3)  # "slow" becomes a timeout
    server.api.faults.configure(
        seed=3,
        rate_429=0.02,
        rate_500=0.015,
        rate_502=0.015,
        rate_503=0.015,
        rate_slow=0.01,
        rate_drop=0.01,
        rate_truncated=0.01,
        rate_malformed=0.01,
        rate_empty_page=0.01,
        retry_after=[0, 1],
        slow_seconds=0.6,
    )
    server.api.log.reset()
    run = sync_ok(make_integration(make_connector(server)))

    injected = server.api.faults.injected
    faults = sum(injected.values())
    assert faults >= 0.07 * clean_requests, injected
    assert {"429", "500", "502", "503", "slow", "drop", "malformed", "truncated"} <= set(injected)
    assert snapshot() == clean
    assert run.requests >= clean_requests + faults - injected.get("empty_page", 0)


# -- pull requests and commits -------------------------------------------------------------------


@pytest.mark.django_db
def test_pull_requests_of_every_state_are_identified_by_repository_and_id(sandbox):
    server = sandbox.default
    repos = [r for r in server.world.iter_repositories() if r.pull_requests]
    superseded = repos[0].pull_requests[1]
    superseded.state = "SUPERSEDED"
    integration = make_integration(make_connector(server))
    sync_ok(integration)

    assert set(PullRequest.objects.values_list("state", flat=True)) == {
        "OPEN",
        "MERGED",
        "DECLINED",
        "SUPERSEDED",
    }
    assert PullRequest.objects.filter(external_id="1").count() == len(repos) > 1
    for repo in repos:
        stored = PullRequest.objects.filter(discovered__external_id=repo.uuid)
        assert {(p.external_id, p.state) for p in stored} == {
            (str(pr.id), pr.state) for pr in repo.pull_requests.values()
        }


@pytest.mark.django_db
def test_commits_are_those_of_the_default_branch_newest_first(sandbox):
    server = sandbox.default
    repo = next(
        r
        for r in server.world.iter_repositories()
        if r.mainbranch and any(b != r.mainbranch for b in r.branches)
    )
    integration = make_integration(make_connector(server))
    provider = registry.build(
        BitbucketCloudProvider, connector=integration.connector, integration=integration
    )
    record = provider.get_repository(repo.uuid)
    hashes = [c.hash for c in provider.iter_commits(record, limit=100)]
    assert hashes == [c.hash for c in main_history(repo)]
    dates = [c.date for c in provider.iter_commits(record, limit=100)]
    assert dates == sorted(dates, reverse=True)
    off_main = {repo.branches[b] for b in repo.branches if b != repo.mainbranch} - set(hashes)
    assert off_main  # commits of other branches exist, and are not the default branch's

    sync_ok(integration)
    stored = set(
        Commit.objects.filter(discovered__external_id=repo.uuid).values_list("hash", flat=True)
    )
    assert stored == set(hashes) and not stored & off_main


@pytest.mark.django_db
def test_the_per_run_cap_is_honoured_and_later_runs_backfill_the_rest(sandbox, monkeypatch):
    monkeypatch.setattr(secondary_module, "RUN_CAP", 20)
    server = sandbox.default
    total = sum(len(r.pull_requests) for r in server.world.iter_repositories())
    assert total > 40
    integration = make_integration(make_connector(server), secondary_kinds=["pull_requests"])

    first = sync_ok(integration)
    assert first.pull_requests == 20 and PullRequest.objects.count() == 20
    runs = 1
    while PullRequest.objects.count() < total and runs < 10:
        assert sync_ok(integration).pull_requests <= 20
        runs += 1
    assert PullRequest.objects.count() == total and runs == math.ceil(total / 20)
    server.api.log.reset()
    assert sync_ok(integration).pull_requests == 0
    assert len(requests_of(server)) <= 2


@pytest.mark.django_db
def test_the_first_sync_takes_fifty_commits_and_a_start_date_backfills_the_rest(sandbox):
    server = sandbox.default
    repo = next(r for r in server.world.iter_repositories() if r.mainbranch)
    server.world.commits_push(workspace=WS, slug=repo.slug, count=60)
    history = [c.hash for c in main_history(repo)]
    assert len(history) > 60

    plain = make_integration(make_connector(server), secondary_kinds=["commits"])
    sync_ok(plain)
    stored = Commit.objects.filter(discovered__external_id=repo.uuid)
    assert set(stored.values_list("hash", flat=True)) == set(history[:50])

    backfilled = make_integration(
        make_connector(server, name="cloud-2"),
        name="acme-since",
        secondary_kinds=["commits"],
        start_date=date(2000, 1, 1),
        auto_import=False,
    )
    sync_ok(backfilled)
    rows = Commit.objects.filter(
        discovered__integration=backfilled, discovered__external_id=repo.uuid
    )
    assert set(rows.values_list("hash", flat=True)) == set(history)


# -- request budgets and token pools -------------------------------------------------------------


@pytest.mark.django_db
def test_each_pooled_token_has_its_own_budget_and_the_client_rotates_when_one_is_spent(
    sandbox, settings
):
    server = sandbox(world(16, prs=1, commits=1))
    server.world.credentials.add_access_token("second-token", workspace=WS, scopes=READ_SCOPES)
    server.api.rate_limits.configure(limits={"api-repositories": 40, "raw": 40, "anonymous": 60})
    config = {"requests_per_hour": 40}  # the client keeps below 95 %: 38 per token

    single = sync(make_integration(make_connector(server, config=config), auto_import=False))
    assert single.state == SyncState.FAILED
    assert "request budget of every credential is spent" in single.error
    assert len(requests_of(server)) == 38  # stopped short of the limit: no 429
    assert not [e for e in requests_of(server) if e.status == 429]

    server.api.rate_limits.reset()
    settings.LANTERN_REQUEST_BUDGET_PREFIX += ":next-hour"  # a new hour, for both sides
    server.api.log.reset()
    pooled = make_connector(
        server,
        name="pool",
        secrets={"tokens": ["sandbox-token", "second-token"]},
        config=config,
    )
    run = sync_ok(make_integration(pooled, name="pooled", auto_import=False))

    log = requests_of(server)
    per_token: dict[str, int] = {}
    for entry in log:
        per_token[entry.credential] = per_token.get(entry.credential, 0) + 1
    assert len(per_token) == 2 and all(count <= 38 for count in per_token.values())
    assert sum(per_token.values()) == run.requests > 38
    assert not [e for e in log if e.status == 429]  # kept below the limit, never ran into it
