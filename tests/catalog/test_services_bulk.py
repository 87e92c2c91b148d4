"""The bulk writes the sync shares: COPY-inserted instances read back as bulk_create's would."""

import pytest
from django.db import IntegrityError, transaction

from catalog.models import Entity, EntitySearch
from catalog.services import entities_upsert, instances_insert
from tests.catalog.conftest import entity_document


@pytest.mark.django_db
def test_instances_insert_sets_ids_defaults_and_auto_fields_like_bulk_create():
    entities = [
        Entity(kind="Component", name=f"svc-{n}", ref_key=f"component:default/svc-{n}", etag="e")
        for n in range(3)
    ]
    entities[1].spec = {"type": "service", "quote": 'a "b" \\ c', "nested": [{"x": None}]}
    instances_insert(entities)

    assert all(entity.pk for entity in entities)
    assert len({entity.pk for entity in entities}) == 3
    assert not any(entity._state.adding for entity in entities)
    for entity in entities:
        stored = Entity.objects.get(pk=entity.pk)
        assert (stored.ref_key, stored.uid, stored.spec) == (
            entity.ref_key,
            entity.uid,
            entity.spec,
        )
        assert stored.created_at is not None and stored.created_at == entity.created_at
        assert (stored.tags, stored.labels, stored.namespace) == ([], {}, "default")
    # The sequence moved past them: an ordinary insert gets a fresh id.
    later = Entity.objects.create(kind="Component", name="later")
    assert later.pk not in {entity.pk for entity in entities}


@pytest.mark.django_db
def test_instances_insert_refuses_a_taken_unique_value_with_an_integrity_error():
    (existing,) = entities_upsert(documents=[entity_document("Component", "taken")]).entities
    duplicate = Entity(kind="Component", name="taken", ref_key=existing.ref_key, etag="e")
    with pytest.raises(IntegrityError, match="ref_key"), transaction.atomic():
        instances_insert([duplicate])


@pytest.mark.django_db
def test_entities_created_in_bulk_are_indexed_once_with_their_ingested_properties():
    links = [{"integration_id": 1, "action": "REGISTER"}]
    result = entities_upsert(
        documents=[entity_document("Component", "alpha"), entity_document("Component", "beta")],
        ingested={
            f"component:default/{name}": (links, {"Fake": {"name": name}})
            for name in ("alpha", "beta")
        },
    )
    assert result.created == 2
    for entity in result.entities:
        stored = Entity.objects.get(pk=entity.pk)
        assert (stored.integration_links, stored.integration_properties) == (
            links,
            {"Fake": {"name": entity.name}},
        )
        keys = set(EntitySearch.objects.filter(entity=stored).values_list("key", flat=True))
        assert {"metadata.integration.action", "integration_properties.fake.name"} <= keys
    # An existing entity keeps its ingested properties: ``ingested`` is for new ones only.
    updated = entities_upsert(
        documents=[entity_document("Component", "alpha", title="Alpha")],
        ingested={"component:default/alpha": ([], {})},
    )
    assert updated.updated == 1
    assert Entity.objects.get(name="alpha").integration_links == links
