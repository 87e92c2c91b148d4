"""The first sync's bulk write path: what it writes in one go equals what the one-by-one path
derives, so nothing has to be written twice."""

import pytest
from django.db import connection

from catalog.models import Entity, EntitySearch
from catalog.rendering import entity_document
from catalog.search import search_rows
from integrations.engine import sync as sync_engine
from integrations.engine.imports import entities_ingested_rebuild
from integrations.models import DiscoveredEntity, ImportedEntity
from tests.integrations.engine.conftest import entity, sync_ok


def _search_rows(entity_id: int) -> set[tuple]:
    return set(
        EntitySearch.objects.filter(entity_id=entity_id).values_list(
            "key", "value", "original_value"
        )
    )


def test_auto_registered_entities_carry_their_links_and_properties_from_the_first_write(
    world, engine_integration
):
    for name in ("payments", "search", "billing"):
        world.add_repo(name)
    integration = engine_integration(auto_import=True)
    sync_ok(integration)

    links = ImportedEntity.objects.filter(integration=integration).select_related("entity")
    assert links.count() == 3
    for link in links:
        written = link.entity
        assert written.integration_links == [
            {
                "integration_id": integration.pk,
                "integration_name": integration.name,
                "provider": integration.provider,
                "action": "REGISTER",
                "linked_entity_uid": str(written.uid),
                "imported_at": link.imported_at.isoformat().replace("+00:00", "Z"),
            }
        ]
        assert written.integration_properties  # the provider's properties of the record
        # Indexed with them: the search rows are the ones its whole document gives.
        expected = {
            (key, value, original) for key, value, original in search_rows(entity_document(written))
        }
        assert _search_rows(written.pk) == expected
        assert any(key.startswith("metadata.integration.") for key, _, _ in expected)
    # Deriving them again from the links changes nothing.
    etags = {link.entity.pk: link.entity.etag for link in links}
    assert entities_ingested_rebuild(entity_ids=list(etags)) == 0
    assert {pk: entity(link.entity.name).etag for link in links for pk in [link.entity.pk]} == etags


def test_an_unchanged_resync_rewrites_no_entity(world, engine_integration):
    world.add_repo("payments")
    integration = engine_integration(auto_import=True)
    sync_ok(integration)
    before = entity("payments")
    run = sync_ok(integration, full=True)
    assert run.refreshed == 0
    after = entity("payments")
    assert (after.etag, after.updated_at) == (before.etag, before.updated_at)


def _reltuples(model) -> float:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table]
        )
        return cursor.fetchone()[0]


def test_a_sync_that_wrote_many_rows_refreshes_the_planner_statistics(
    world, engine_integration, monkeypatch
):
    if connection.vendor != "postgresql":
        pytest.skip("planner statistics are PostgreSQL's")
    monkeypatch.setattr(sync_engine, "ANALYZE_AFTER_ROWS", 10)
    for index in range(3):
        world.add_repo(f"svc-{index}")
    before = _reltuples(DiscoveredEntity)
    sync_ok(engine_integration("small", auto_import=True))  # 3 records + 3 imports: 6 rows
    assert _reltuples(DiscoveredEntity) == before
    for index in range(3, 11):
        world.add_repo(f"svc-{index}")
    sync_ok(engine_integration("large", auto_import=False))  # 11 new records
    assert _reltuples(DiscoveredEntity) == DiscoveredEntity.objects.count() == 14
    assert _reltuples(Entity) == Entity.objects.count()
