"""Vanished repositories are shown, never deleted, on Bitbucket Cloud and Data Center over real
sockets: a full listing that no longer finds a linked entity's repository marks the record gone
(with when) and the entity with Backstage's ``backstage.io/orphan: "true"`` annotation, which
the catalog API can filter on; the entity, its link and its ingested properties stay. When the
repository comes back, the marker goes.
"""

import pytest

from catalog.models import Entity
from catalog.selectors import entities_visible
from integrations.choices import DiscoveredState, LinkState, SyncState
from integrations.engine.orphans import ORPHAN_ANNOTATION
from integrations.models import DiscoveredEntity, ImportedEntity
from tests.integrations.engine.conftest import sync

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["cloud", "dc"])
def bitbucket(request, bitbucket_factory):
    return bitbucket_factory(request.param, repos=6, prs=1, commits=1)


def linked_entity(row: DiscoveredEntity) -> Entity:
    return ImportedEntity.objects.get(discovered=row, state=LinkState.LINKED).entity


def test_a_deleted_repository_leaves_an_orphan_marked_and_kept(bitbucket, client, admin_user):
    integration = bitbucket.integration()
    assert sync(integration).state == SyncState.SUCCEEDED
    world = bitbucket.server.world
    repo = sorted(world.iter_repositories(), key=lambda r: r.slug)[0]
    row = DiscoveredEntity.objects.get(integration=integration, data__slug=repo.slug)
    entity = linked_entity(row)
    properties_before = entity.integration_properties
    assert ORPHAN_ANNOTATION not in entity.annotations

    world.repository_delete(workspace=repo.workspace, slug=repo.slug)
    run = sync(integration, full=True)

    assert run.state == SyncState.SUCCEEDED and run.gone == 1
    row.refresh_from_db()
    assert row.state == DiscoveredState.GONE and row.gone_at is not None
    entity.refresh_from_db()
    assert entity.annotations[ORPHAN_ANNOTATION] == "true"
    # Kept as it was: the link, the ingested properties, the entity itself.
    assert ImportedEntity.objects.filter(discovered=row, state=LinkState.LINKED).exists()
    assert entity.integration_properties == properties_before
    # The catalog API finds it by Backstage's own filter, and only it.
    client.force_login(admin_user)
    response = client.get(
        "/api/catalog/entities", {"filter": f"metadata.annotations.{ORPHAN_ANNOTATION}=true"}
    )
    assert response.status_code == 200
    assert [item["metadata"]["name"] for item in response.json()] == [entity.name]
    others = entities_visible(user=admin_user).exclude(pk=entity.pk)
    assert not any(ORPHAN_ANNOTATION in (other.annotations or {}) for other in others)


def test_an_orphan_whose_repository_comes_back_loses_the_marker(bitbucket):
    integration = bitbucket.integration()
    sync(integration)
    world = bitbucket.server.world
    repo = sorted(world.iter_repositories(), key=lambda r: r.slug)[0]
    row = DiscoveredEntity.objects.get(integration=integration, data__slug=repo.slug)
    entity = linked_entity(row)
    world.repository_delete(workspace=repo.workspace, slug=repo.slug)
    sync(integration, full=True)
    entity.refresh_from_db()
    assert entity.annotations.get(ORPHAN_ANNOTATION) == "true"

    # Back under the same id (restored from the trash, as it were).
    with world.lock:
        world.workspaces[repo.workspace].repositories[repo.slug] = repo
    sync(integration, full=True)

    row.refresh_from_db()
    assert row.state == DiscoveredState.IMPORTED and row.gone_at is None
    entity.refresh_from_db()
    assert ORPHAN_ANNOTATION not in entity.annotations
