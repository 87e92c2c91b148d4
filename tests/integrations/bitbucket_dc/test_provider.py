"""The Bitbucket Data Center provider against the HTTPS sandbox and its private CA, over real
sockets: the probe and each refusal, discovery and import at scale with pull requests and
commits, paging over ``nextPageStart``, injected faults, OAuth application links."""

import math
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from catalog.models import Entity
from integrations import services
from integrations.choices import SyncState
from integrations.models import Commit, Connector, DiscoveredEntity, PullRequest
from integrations.providers import registry
from integrations.providers.base import ProviderAuthError
from integrations.providers.bitbucket_dc import client as client_module
from integrations.providers.bitbucket_dc.provider import (
    HTTPS_ONLY,
    BitbucketDataCenterProvider,
)
from integrations.providers.http import RetryPolicy
from tests.integrations.bitbucket_dc.conftest import (
    make_connector,
    make_integration,
    requests_of,
    snapshot,
    world,
)
from tests.integrations.engine.conftest import sync, sync_ok

LISTING = "GET /rest/api/1.0/repos"
DEFAULT_BRANCH = "GET /rest/api/1.0/projects/{project_key}/repos/{repo_slug}/branches/default"
PROPERTY_FIELDS = {
    "id",
    "name",
    "slug",
    "full_name",
    "url",
    "project_key",
    "project_name",
    "default_branch",
    "visibility",
    "public",
    "state",
    "archived",
    "clone_http",
    "clone_ssh",
    "description",
}


def provider_for(connector, **target) -> BitbucketDataCenterProvider:
    integration = services.Integration(connector=connector, provider=connector.provider)
    integration.target = target
    return registry.build(BitbucketDataCenterProvider, connector=connector, integration=integration)


def main_history(repo) -> list:
    return repo.history(repo.branches[repo.mainbranch]) if repo.mainbranch else []


def test_the_provider_is_registered_and_described():
    provider_class = registry.get("bitbucket_dc")
    assert provider_class is BitbucketDataCenterProvider
    assert provider_class.properties_key == "BitbucketDataCenter"
    assert provider_class.catalog_file == "catalog-info.yaml"
    assert provider_class.target_keys == ("projects", "repository_pattern")
    assert provider_class.validate_target({"projects": ["PLAT"], "repository_pattern": "^a"}) == {}
    errors = provider_class.validate_target({"projects": "PLAT", "repository_pattern": "(", "x": 1})
    assert set(errors) == {"projects", "repository_pattern", "x"}


# -- the probe -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_probe_passes_over_https_with_the_private_ca(sandbox):
    server = sandbox.default
    result = provider_for(make_connector(server)).probe()
    assert result.ok, result.message
    assert result.message == "Connected to Bitbucket Data Center 9.4.1"
    assert result.details["version"] == "9.4.1"


@pytest.mark.django_db
def test_without_the_ca_the_probe_fails_with_a_certificate_error_naming_the_fix(sandbox):
    result = provider_for(make_connector(sandbox.default, ca_pem="")).probe()
    assert not result.ok
    assert "TLS certificate of 127.0.0.1 could not be verified" in result.message
    assert "add its certificate (PEM) to the connector" in result.message


@pytest.mark.django_db
def test_another_ca_is_no_better_than_none(sandbox):
    other = sandbox(world(2))
    result = provider_for(make_connector(sandbox.default, ca_pem=other.ca_pem)).probe()
    assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in result.message


@pytest.mark.django_db
def test_an_http_instance_url_is_refused_by_the_probe_and_the_client(sandbox):
    """A row stored before saving checked the scheme (saving refuses it now: see
    tests/integrations/test_connector_checks.py) is still refused where it is used."""
    server = sandbox.default
    connector = make_connector(server)
    connector.base_url = server.url.replace("https://", "http://")
    connector.save(update_fields=["base_url"])
    provider = provider_for(connector)
    result = provider.probe()
    assert not result.ok and result.message == HTTPS_ONLY
    assert "must start with https://" in result.message
    with pytest.raises(Exception, match="must start with https://"):
        next(provider.iter_repositories())
    assert not requests_of(server)


@pytest.mark.django_db
@pytest.mark.parametrize("version", ["8.19.2", "7.21.0"])
def test_an_unsupported_version_is_refused_naming_it(sandbox, version):
    server = sandbox.default
    server.api.configure(version=version)
    result = provider_for(make_connector(server)).probe()
    assert not result.ok
    assert result.message.startswith(f"Bitbucket Data Center {version} is not supported")
    assert "9.x or 10.x" in result.message
    assert result.details["version"] == version


@pytest.mark.django_db
def test_version_10_is_supported(sandbox):
    server = sandbox.default
    server.api.configure(version="10.0.1")
    assert provider_for(make_connector(server)).probe().ok


@pytest.mark.django_db
def test_a_wrong_token_is_refused_with_its_own_message(sandbox):
    result = provider_for(make_connector(sandbox.default, token="wrong")).probe()
    assert not result.ok
    assert result.message.startswith("The personal access token was refused")


@pytest.mark.django_db
def test_a_chosen_project_the_token_cannot_read_is_named(sandbox):
    server = sandbox.default
    keys = sorted(server.world.workspaces[server.api.workspace].projects)
    server.world.credentials.dc.add_token("narrow", projects=[keys[0]])
    connector = make_connector(server, token="narrow")
    assert provider_for(connector, projects=[keys[0]]).probe().ok
    result = provider_for(connector, projects=[keys[0], keys[1]]).probe()
    assert not result.ok
    assert result.message == (
        f"The credential cannot read project {keys[1]}: give the token (or its user) "
        "PROJECT_READ on it."
    )
    missing = provider_for(connector, projects=["NOPE"]).probe()
    assert not missing.ok and "No project NOPE" in missing.message


@pytest.mark.django_db
def test_a_url_that_is_not_an_instance_is_explained(sandbox):
    server = sandbox.default
    result = provider_for(make_connector(server, base_url=f"{server.url}/nested")).probe()
    assert not result.ok and "does not answer like Bitbucket Data Center" in result.message


@pytest.mark.django_db
def test_connector_test_records_the_health(sandbox):
    connector = make_connector(sandbox.default, ca_pem="")
    result = services.connector_test(connector=connector)
    connector.refresh_from_db()
    assert not result.ok and connector.health == "down"
    assert "add its certificate (PEM)" in connector.last_error


# -- discovery and import at scale ---------------------------------------------------------------


@pytest.mark.django_db
def test_200_repositories_across_projects_are_discovered_and_imported_with_prs_and_commits(
    sandbox,
):
    server = sandbox(world(200, projects=5, prs=3, commits=4))
    repos = {repo.slug: repo for repo in server.world.iter_repositories()}
    assert len({repo.project_key for repo in repos.values()}) == 5
    integration = make_integration(make_connector(server))
    run = sync_ok(integration)

    assert run.discovered == 200 and run.imported == 200
    assert DiscoveredEntity.objects.filter(integration=integration).count() == 200
    assert Entity.objects.count() == 200
    prs = sum(len(repo.pull_requests) for repo in repos.values())
    commits = sum(len(main_history(repo)) for repo in repos.values())
    assert run.pull_requests == PullRequest.objects.count() == prs > 0
    assert run.commits == Commit.objects.count() == commits > 0

    repo = next(r for r in repos.values() if r.mainbranch and r.pull_requests)
    entity = Entity.objects.get(name=repo.slug)
    properties = entity.integration_properties["BitbucketDataCenter"]
    assert set(properties) == PROPERTY_FIELDS
    assert properties["project_key"] == repo.project_key
    assert properties["slug"] == repo.slug and properties["default_branch"] == repo.mainbranch
    assert properties["visibility"] == ("private" if repo.is_private else "public")
    assert properties["state"] == "AVAILABLE"
    assert properties["url"] == f"{server.url}/projects/{repo.project_key}/repos/{repo.slug}/browse"
    assert properties["clone_http"].endswith(f"/scm/{repo.project_key.lower()}/{repo.slug}.git")
    assert properties["clone_ssh"].startswith("ssh://git@127.0.0.1:7999/")
    assert entity.annotations["bitbucket.org/default-branch"] == repo.mainbranch
    assert entity.annotations["backstage.io/source-location"] == f"url:{properties['url']}/"
    assert entity.labels["bitbucket.org/project"] == repo.project_key
    stored = PullRequest.objects.filter(discovered__name=repo.slug).order_by("external_id")
    assert [pr.external_id for pr in stored] == sorted(str(i) for i in repo.pull_requests)
    pr = repo.pull_requests[1]
    row = stored.get(external_id="1")
    assert row.title == pr.title and row.source_branch == pr.source_branch
    assert row.state == {"SUPERSEDED": "DECLINED"}.get(pr.state, pr.state)
    assert row.url.endswith(f"/repos/{repo.slug}/pull-requests/1")
    hashes = set(Commit.objects.filter(discovered__name=repo.slug).values_list("hash", flat=True))
    assert hashes == {c.hash for c in main_history(repo)}


@pytest.mark.django_db
def test_catalog_info_yaml_enriches_the_entity(sandbox):
    server = sandbox.default
    repo = next(
        r
        for r in server.world.iter_repositories()
        if r.mainbranch and r.read_file(r.resolve(r.mainbranch), "catalog-info.yaml")
    )
    sync_ok(make_integration(make_connector(server)))
    entity = Entity.objects.get(name=repo.slug)
    assert entity.owner == f"team-{repo.project_key.lower()}"
    assert entity.lifecycle in ("production", "experimental", "deprecated")


@pytest.mark.django_db
def test_chosen_projects_and_a_name_pattern_narrow_the_discovery(sandbox):
    server = sandbox.default
    keys = sorted(server.world.workspaces[server.api.workspace].projects)[:2]
    expected = {
        r.slug
        for r in server.world.iter_repositories()
        if r.project_key in keys and "-service" in r.name
    }
    integration = make_integration(
        make_connector(server),
        target={"projects": [k.lower() for k in keys], "repository_pattern": "-service"},
    )
    sync_ok(integration)
    assert set(integration.discovered.values_list("name", flat=True)) == expected
    listed = {e.path for e in requests_of(server) if e.path.endswith("/repos")}
    assert listed == {f"/rest/api/1.0/projects/{key}/repos" for key in keys}


@pytest.mark.django_db
def test_a_second_sync_changes_nothing_and_picks_up_a_push(sandbox):
    server = sandbox.default
    integration = make_integration(make_connector(server))
    sync_ok(integration)
    first = snapshot()
    sync_ok(integration, full=True)
    assert snapshot() == first
    repo = next(r for r in server.world.iter_repositories() if r.mainbranch)
    (pushed,) = server.world.commits_push(workspace=repo.workspace, slug=repo.slug, count=1)
    sync_ok(integration)
    assert Commit.objects.filter(discovered__name=repo.slug, hash=pushed.hash).exists()


@pytest.mark.django_db
def test_an_empty_repository_is_discovered_without_prs_or_commits(sandbox):
    server = sandbox.default
    project = sorted(server.world.workspaces[server.api.workspace].projects)[0]
    server.world.repository_create(
        workspace=server.api.workspace, project=project, name="empty-one"
    )
    sync_ok(make_integration(make_connector(server)))
    row = DiscoveredEntity.objects.get(name="empty-one")
    assert row.data["default_branch"] is None and row.source_updated_at is None
    assert not row.pull_requests.exists() and not row.commits.exists()


# -- paging --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("page_limit", "options"),
    [
        (7, {}),
        (25, {}),
        (100, {"max_limit": 10}),  # the instance caps what the client asks
        (100, {}),
        (10, {"short_pages": True}),  # pages shorter than the limit: only nextPageStart works
    ],
)
def test_paging_over_next_page_start_fetches_every_repository_exactly_once(
    sandbox, page_limit, options
):
    server = sandbox(world(60), **options)
    connector = make_connector(server)
    provider = registry.build(
        BitbucketDataCenterProvider, connector=connector, integration=None, page_limit=page_limit
    )
    ids = [record.external_id for page in provider.iter_repositories() for record in page]
    assert len(ids) == len(set(ids)) == 60

    listing = requests_of(server, LISTING)
    starts = [int(dict(entry.query)["start"]) for entry in listing]
    assert starts == sorted(set(starts))
    per_page = min(page_limit, options.get("max_limit", 1000))
    if options.get("short_pages"):
        per_page -= 1
    assert len(listing) == math.ceil(60 / per_page)
    assert all(dict(entry.query)["limit"] == str(page_limit) for entry in listing)
    default_branches = [entry.path for entry in requests_of(server, DEFAULT_BRANCH)]
    assert len(default_branches) == len(set(default_branches)) == 60


@pytest.mark.django_db
def test_pull_requests_and_commits_honour_since_until_and_limit_newest_first(sandbox):
    server = sandbox(world(6, prs=12, commits=15))
    repo = max(server.world.iter_repositories(), key=lambda r: len(r.pull_requests))
    provider = provider_for(make_connector(server))
    record = provider.get_repository("", f"{repo.project_key}/{repo.slug}")
    assert record.data["default_branch"] == repo.mainbranch

    prs = list(provider.iter_pull_requests(record, limit=100))
    stamps = [pr.updated_on for pr in prs]
    assert len(prs) == len(repo.pull_requests) and stamps == sorted(stamps, reverse=True)
    since, until = stamps[8], stamps[2]
    window = list(provider.iter_pull_requests(record, since=since, until=until, limit=100))
    assert [pr.updated_on for pr in window] == stamps[3:8]
    assert len(list(provider.iter_pull_requests(record, limit=4))) == 4

    server.api.log.reset()
    recent = list(provider.iter_pull_requests(record, since=stamps[1], limit=100))
    assert [pr.external_id for pr in recent] == [prs[0].external_id]
    assert len(requests_of(server)) == 1  # stopped paging at the first older one

    commits = list(provider.iter_commits(record, limit=100))
    assert [c.hash for c in commits] == [c.hash for c in main_history(repo)]
    dates = [c.date for c in commits]
    bounded = list(provider.iter_commits(record, since=dates[10], until=dates[3], limit=100))
    assert [c.hash for c in bounded] == [c.hash for c in commits[4:10]]
    assert len(list(provider.iter_commits(record, limit=5))) == 5
    assert commits[0].url.endswith(f"/repos/{repo.slug}/commits/{commits[0].hash}")


@pytest.mark.django_db
def test_get_repository_by_name_or_by_id(sandbox):
    server = sandbox.default
    provider = provider_for(make_connector(server))
    repo = next(server.world.iter_repositories())
    by_name = provider.get_repository("", f"{repo.project_key}/{repo.slug}")
    by_id = provider.get_repository(by_name.external_id)
    assert by_id.data == by_name.data and by_id.name == repo.slug
    assert provider.get_repository("999999") is None
    assert provider.get_repository("", f"{repo.project_key}/no-such-repo") is None
    assert provider.in_target(by_name)
    narrowed = provider_for(provider.connector, projects=["NOPE"])
    assert not narrowed.in_target(by_name)


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_ten_percent_injected_faults_the_sync_gives_the_catalog_of_a_clean_run(
    sandbox, monkeypatch
):
    server = sandbox(world(50, prs=3, commits=3, seed=5))
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
        rate_500=0.02,
        rate_502=0.015,
        rate_503=0.015,
        rate_slow=0.005,
        rate_drop=0.01,
        rate_truncated=0.01,
        rate_malformed=0.01,
        retry_after=[0, 1],
        slow_seconds=0.5,
    )
    server.api.log.reset()
    run = sync_ok(make_integration(make_connector(server)))

    injected = server.api.faults.injected
    faults = sum(injected.values())
    assert faults >= 0.07 * clean_requests, injected
    assert {"429", "500", "502", "503", "drop"} <= set(injected)
    assert {"malformed", "truncated"} & set(injected)  # broken bodies of good answers
    assert snapshot() == clean
    assert run.requests >= clean_requests + faults


@pytest.mark.django_db
def test_a_rate_limited_instance_is_waited_out(sandbox, monkeypatch):
    """Data Center's 429s carry Retry-After; the client waits (capped at max_delay here, which
    outlasts the sandbox's tiny window) and carries on."""
    monkeypatch.setattr(
        client_module, "retry_policy", lambda: RetryPolicy(base_delay=0.002, max_delay=0.12)
    )
    server = sandbox.default
    server.api.rate_limits.configure(limits={"api": 10}, retry_after=1, window=0.1)
    run = sync_ok(make_integration(make_connector(server)))
    assert run.discovered == 24
    assert any(entry.status == 429 for entry in requests_of(server))


# -- OAuth 2.0 application links -----------------------------------------------------------------


def _oauth_connector(server, *, redirect_uri: str | None = None):
    connector = make_connector(
        server,
        name="dc-oauth",
        auth_kind="oauth_application_link",
        secrets={"client_secret": "shh"},
        config={"client_id": "lantern"},
    )
    expected = BitbucketDataCenterProvider.oauth_redirect_uri(connector)
    server.world.credentials.dc.add_client(
        client_id="lantern", secret="shh", redirect_uri=redirect_uri or expected
    )
    return connector


def _approve(server, authorize_url: str) -> str:
    """The browser's part: open the consent page, Allow, read the code off the redirect."""
    context = httpx.create_ssl_context()
    context.load_verify_locations(cadata=server.ca_pem)
    assert httpx.get(authorize_url, verify=context).status_code == 200
    response = httpx.post(authorize_url, data={"decision": "allow"}, verify=context)
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


@pytest.mark.django_db
def test_an_application_link_authorises_syncs_and_refreshes(sandbox):
    server = sandbox.default
    connector = _oauth_connector(server)
    redirect = BitbucketDataCenterProvider.oauth_redirect_uri(connector)
    assert redirect == f"https://lantern.example/org/bitbucket-dc/{connector.pk}/callback"
    started = services.connector_oauth_start(connector=connector)
    state = started.pending["state"]
    query = parse_qs(urlsplit(started.url).query)
    assert query["redirect_uri"] == [redirect] and query["state"] == [state]
    assert query["code_challenge_method"] == ["S256"]
    services.connector_oauth_complete(
        connector=connector,
        code=_approve(server, started.url),
        state=state,
        pending=started.pending,
    )
    connector.refresh_from_db()
    first = connector.secrets
    assert first["access_token"] and first["refresh_token"] and first["client_secret"] == "shh"
    assert provider_for(connector).probe().ok

    server.world.credentials.dc.expire_access_tokens()
    run = sync_ok(make_integration(connector))
    assert run.discovered == 24
    connector.refresh_from_db()
    assert connector.secrets["access_token"] != first["access_token"]
    assert connector.secrets["refresh_token"] != first["refresh_token"]  # rotated, stored


@pytest.mark.django_db
def test_invalid_grant_is_explained_as_a_redirect_uri_mismatch(sandbox):
    server = sandbox.default
    connector = _oauth_connector(server, redirect_uri="https://old.example/callback")
    started = services.connector_oauth_start(connector=connector)
    with pytest.raises(ProviderAuthError) as refused:
        services.connector_oauth_complete(
            connector=connector,
            code=_approve(server, started.url),
            state=started.pending["state"],
            pending=started.pending,
        )
    message = refused.value.message
    assert "invalid_grant" in message and "redirect URL mismatch" in message
    assert BitbucketDataCenterProvider.oauth_redirect_uri(connector) in message


@pytest.mark.django_db
def test_an_application_link_not_yet_authorised_says_so(sandbox):
    connector = _oauth_connector(sandbox.default)
    result = provider_for(connector).probe()
    assert not result.ok and "not authorised yet" in result.message
    connector.refresh_from_db()
    assert connector.health == "down"


@pytest.mark.django_db
def test_a_failed_sync_records_the_certificate_error(sandbox):
    run = sync(make_integration(make_connector(sandbox.default, ca_pem="")))
    assert run.state == SyncState.FAILED
    assert "add its certificate (PEM) to the connector" in run.error
