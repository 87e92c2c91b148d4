"""The first sync's bulk write path: what it writes in one go equals what the one-by-one path
derives, so nothing has to be written twice."""

from catalog.models import EntitySearch
from catalog.rendering import entity_document
from catalog.search import search_rows
from integrations.engine.imports import entities_ingested_rebuild
from integrations.models import ImportedEntity
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
