"""End to end over loopback: the Cloud sandbox delivers real signed webhooks to a live Lantern
server, whose task (in process) refreshes just the repository concerned."""

import pytest

from catalog.models import Entity
from integrations import services
from integrations.choices import DiscoveredState, SyncMode, SyncState
from integrations.engine.sync import integration_sync
from integrations.models import Commit, DiscoveredEntity, PullRequest, SyncRun, WebhookDelivery
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import webhooks as cloud_webhooks
from tests.integrations.webhooks.conftest import webhook_url
from tests.sandbox.fixtures import SANDBOX_TOKEN
from tests.sandbox.helpers import first_repo

WS = "acme"
HANDFUL = 12


@pytest.fixture
def lantern(cloud_sandbox, live_server, transactional_db):
    """A synced Cloud integration whose workspace hook posts to the live server; the sandbox's
    request log starts empty."""
    connector = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=cloud_sandbox.api_url,
        secrets={"token": SANDBOX_TOKEN},
    )
    integration = services.integration_create(
        connector=connector, name="acme", target={"workspace": WS}, auto_import=True
    )
    run = integration_sync(integration_id=integration.pk, trigger="manual", full=True)
    assert run.state == SyncState.SUCCEEDED, run.error
    cloud_webhooks.ensure_webhook(
        registry.for_integration(integration).client,
        workspace=WS,
        url=live_server.url + webhook_url(integration),
        secret=integration.webhook_secret,
    )
    cloud_sandbox.api.log.reset()
    return integration


def settle(sandbox) -> list:
    """Wait for every delivery (each is processed before it is answered); returns the API
    requests Lantern made meanwhile, and empties the log."""
    assert sandbox.api.webhooks.wait_idle(30)
    for delivery in sandbox.api.webhooks.deliveries():
        assert delivery.state == "delivered", delivery.attempts
    entries = sandbox.api.log.entries()
    sandbox.api.log.reset()
    sandbox.api.webhooks.reset()
    return entries


def only_for(entries, repo) -> None:
    assert entries, "the refresh made no request"
    assert len(entries) <= HANDFUL, [entry.path for entry in entries]
    prefixes = (f"/2.0/repositories/{WS}/{repo.uuid}", f"/2.0/repositories/{WS}/{repo.slug}")
    assert all(entry.path.startswith(prefixes) for entry in entries), [e.path for e in entries]


def test_push_new_pull_request_and_merge_reach_the_catalog(cloud_sandbox, lantern):
    world = cloud_sandbox.world
    repo = first_repo(cloud_sandbox, with_prs=True)

    (commit,) = world.commits_push(workspace=WS, slug=repo.slug, message="Webhook push")
    only_for(settle(cloud_sandbox), repo)
    assert Commit.objects.filter(hash=commit.hash, message="Webhook push").exists()

    pr = world.pullrequest_open(
        workspace=WS, slug=repo.slug, title="Add the catalog file", source="feature/webhooks"
    )
    only_for(settle(cloud_sandbox), repo)
    row = PullRequest.objects.get(discovered__external_id=repo.uuid, external_id=str(pr.id))
    assert (row.title, row.state) == ("Add the catalog file", "OPEN")

    world.pullrequest_merge(workspace=WS, slug=repo.slug, pr_id=pr.id)
    only_for(settle(cloud_sandbox), repo)
    row.refresh_from_db()
    assert row.state == "MERGED"
    assert Commit.objects.filter(hash=repo.branches[repo.mainbranch]).exists()

    deliveries = WebhookDelivery.objects.filter(integration=lantern)
    assert set(deliveries.values_list("outcome", flat=True)) == {"processed"}
    assert {"repo:push", "pullrequest:created", "pullrequest:fulfilled"} <= set(
        deliveries.values_list("event", flat=True)
    )
    runs = SyncRun.objects.filter(integration=lantern, mode=SyncMode.REPOSITORY)
    assert runs.exists() and set(runs.values_list("trigger", flat=True)) == {"webhook"}


def test_rename_updates_the_record_and_its_entity(cloud_sandbox, lantern):
    repo = first_repo(cloud_sandbox)
    cloud_sandbox.world.repository_rename(workspace=WS, slug=repo.slug, name="Renamed Service")
    only_for(settle(cloud_sandbox), repo)
    row = DiscoveredEntity.objects.get(integration=lantern, external_id=repo.uuid)
    assert (row.name, row.data["full_name"]) == ("renamed-service", f"{WS}/renamed-service")
    entity = Entity.objects.get(imports__discovered=row)
    assert entity.annotations["bitbucket.org/repo-url"].endswith("/acme/renamed-service")


def test_new_repository_is_discovered_and_auto_imported(cloud_sandbox, lantern):
    repo = cloud_sandbox.world.repository_create(
        workspace=WS,
        project=next(iter(cloud_sandbox.world.workspaces[WS].projects)),
        name="fresh-service",
        files={"README.md": "# Fresh\n"},
    )
    only_for(settle(cloud_sandbox), repo)
    row = DiscoveredEntity.objects.get(integration=lantern, external_id=repo.uuid)
    assert row.state == DiscoveredState.IMPORTED
    assert Commit.objects.filter(discovered=row).count() == 1


def test_push_to_a_repository_outside_the_target_projects_is_not_discovered(cloud_sandbox, lantern):
    projects = sorted(cloud_sandbox.world.workspaces[WS].projects)
    repo = next(r for r in cloud_sandbox.world.iter_repositories() if r.project_key != projects[0])
    services.integration_update(
        integration=lantern, target={"workspace": WS, "projects": [projects[0]]}
    )
    DiscoveredEntity.objects.filter(integration=lantern, external_id=repo.uuid).delete()

    cloud_sandbox.world.commits_push(workspace=WS, slug=repo.slug)

    only_for(settle(cloud_sandbox), repo)
    assert not DiscoveredEntity.objects.filter(integration=lantern, external_id=repo.uuid).exists()
    assert WebhookDelivery.objects.get(integration=lantern).outcome == "processed"
