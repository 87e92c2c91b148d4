"""Registration behaviours (register, merge, register & merge) and the kind/type rules."""

import pytest
from django.core.exceptions import ValidationError

from catalog.models import Entity
from integrations.choices import DiscoveredState, ImportAction, LinkState, RecommendedAction
from integrations.engine.imports import ImportRefused, discovered_import
from integrations.models import ImportedEntity
from tests.integrations.conftest import component_doc
from tests.integrations.engine.conftest import discovered, entity, sync_ok

SLUG_RULE = [
    {
        "ingested": "slug",
        "catalog": 'metadata.annotations."fake.example/slug"',
        "operator": "equals",
    }
]


def annotated(name: str, slug: str, **spec) -> dict:
    return component_doc(name, metadata={"annotations": {"fake.example/slug": slug}}, **spec)


# -- register ------------------------------------------------------------------------------------


def test_register_only_registers_new_entities_and_refuses_merge(
    world, engine_integration, make_entities
):
    (existing,) = make_entities(component_doc("payments"))
    world.add_repo("payments", description="Takes money")
    world.add_repo("search", description="Finds things")
    integration = engine_integration(registration="register")
    sync_ok(integration)

    payments = discovered(integration, "payments")
    # The name is taken and a register-only integration cannot merge: a conflict, named.
    assert payments.recommended_action == RecommendedAction.CONFLICT
    assert payments.name_holder == existing
    with pytest.raises(ImportRefused, match="only registers new entities"):
        discovered_import(discovered=payments, action="merge", entity=existing)
    with pytest.raises(ImportRefused, match="already exists"):
        discovered_import(discovered=payments)
    assert not ImportedEntity.objects.filter(discovered=payments).exists()

    imported = discovered_import(discovered=discovered(integration, "search"))
    assert imported.action == ImportAction.REGISTER
    created = entity("search")
    assert (created.spec_type, created.description) == ("service", "Finds things")
    assert created.annotations["fake.example/repo-url"] == "https://fake.example/search"
    assert [item["action"] for item in created.integration_links] == ["REGISTER"]


def test_register_only_default_import_registers_even_when_a_match_is_suggested(
    world, engine_integration, make_entities
):
    """The suggested entity is advice; a register-only integration's import still registers."""
    make_entities(annotated("legacy-billing", "billing"))
    world.add_repo("billing")
    integration = engine_integration(registration="register", correlation=SLUG_RULE)
    sync_ok(integration)
    row = discovered(integration, "billing")
    assert row.recommended_action == RecommendedAction.REGISTER

    imported = discovered_import(discovered=row)

    assert imported.action == ImportAction.REGISTER
    assert imported.entity.name == "billing"
    assert entity("legacy-billing").integration_links == []


def test_register_only_auto_import_registers_records_that_have_a_suggested_match(
    world, engine_integration, make_entities
):
    make_entities(annotated("legacy-billing", "billing"))
    world.add_repo("billing")
    integration = engine_integration(
        registration="register", correlation=SLUG_RULE, auto_import=True
    )
    run = sync_ok(integration)
    assert run.imported == 1
    assert discovered(integration, "billing").state == DiscoveredState.IMPORTED
    assert entity("billing").integration_links[0]["action"] == "REGISTER"


def test_register_import_takes_an_edited_type(world, engine_integration):
    world.add_repo("toolkit")
    integration = engine_integration()
    sync_ok(integration)
    discovered_import(discovered=discovered(integration, "toolkit"), entity_type="library")
    assert entity("toolkit").spec["type"] == "library"


# -- merge ---------------------------------------------------------------------------------------


def test_merge_only_merges_matches_and_leaves_unmatched_records_waiting(
    world, engine_integration, make_entities
):
    payments, other = make_entities(component_doc("payments"), component_doc("other"))
    world.add_repo("payments", description="Takes money")
    world.add_repo("orphan")
    integration = engine_integration(registration="merge", auto_import=True)
    assert integration.entity_type == ""

    run = sync_ok(integration)

    assert run.imported == 1
    link = ImportedEntity.objects.get(discovered__name="payments")
    assert (link.entity_id, link.action) == (payments.pk, ImportAction.MERGE)
    payments.refresh_from_db()
    assert payments.description == "Takes money"  # empty field filled by the merge
    assert payments.spec_type == "service"  # the merge never changes the type
    orphan = discovered(integration, "orphan")
    assert orphan.state == DiscoveredState.DISCOVERED
    assert orphan.recommended_action == RecommendedAction.MERGE
    assert orphan.suggested_entity_id is None
    assert not orphan.imports.exists()
    assert not Entity.objects.filter(name="orphan").exists()

    # A second run's auto-import still leaves it alone.
    sync_ok(integration)
    assert not orphan.imports.exists()
    with pytest.raises(ImportRefused, match="only merges into existing entities"):
        discovered_import(discovered=orphan, action="register")
    with pytest.raises(ImportRefused, match="choose the entity orphan belongs to"):
        discovered_import(discovered=orphan)
    with pytest.raises(ImportRefused, match="type cannot be set"):
        discovered_import(discovered=orphan, entity=other, entity_type="library")

    imported = discovered_import(discovered=orphan, entity=other)  # the user picks the entity
    assert (imported.entity_id, imported.action) == (other.pk, ImportAction.MERGE)


def test_merge_only_integration_refuses_a_type(connector):
    from integrations import services

    with pytest.raises(ValidationError) as excinfo:
        services.integration_create(
            connector=connector, name="m", registration="merge", entity_type="library"
        )
    assert "entity_type" in excinfo.value.message_dict


def test_merge_keeps_the_entitys_own_values(world, engine_integration, make_entities):
    (payments,) = make_entities(
        component_doc("payments", metadata={"description": "Written by the team"})
    )
    world.add_repo("payments", description="From the repository")
    integration = engine_integration(auto_import=True)
    sync_ok(integration)
    payments.refresh_from_db()
    assert payments.description == "Written by the team"
    assert payments.annotations["fake.example/repo-url"] == "https://fake.example/payments"


# -- register & merge ----------------------------------------------------------------------------


def test_register_and_merge_merges_a_single_match_and_registers_otherwise(
    world, engine_integration, make_entities
):
    single, first, second = make_entities(
        annotated("payments-service", "payments"),
        annotated("billing-one", "billing"),
        annotated("billing-two", "billing"),
    )
    for name in ("payments", "billing", "fresh"):
        world.add_repo(name)
    integration = engine_integration(correlation=SLUG_RULE, auto_import=True)

    sync_ok(integration)

    links = {
        link.discovered.name: (link.entity.name, link.action)
        for link in ImportedEntity.objects.filter(integration=integration, state=LinkState.LINKED)
    }
    assert links == {
        "payments": ("payments-service", ImportAction.MERGE),
        "billing": ("billing", ImportAction.REGISTER),
        "fresh": ("fresh", ImportAction.REGISTER),
    }
    billing = discovered(integration, "billing")
    assert billing.recommended_action == RecommendedAction.REGISTER
    assert billing.suggested_entity_id is None
    assert sorted(c["ref"] for c in billing.match_candidates) == [
        "component:default/billing-one",
        "component:default/billing-two",
    ]


def test_register_and_merge_refuses_a_type_when_merging(world, engine_integration, make_entities):
    make_entities(component_doc("payments"))
    world.add_repo("payments")
    integration = engine_integration()
    sync_ok(integration)
    row = discovered(integration, "payments")
    assert row.recommended_action == RecommendedAction.MERGE
    with pytest.raises(ImportRefused, match="type cannot be set"):
        discovered_import(discovered=row, entity_type="library")


# -- kind ----------------------------------------------------------------------------------------


def test_custom_kind_registers_resources_and_correlates_only_with_that_kind(
    world, engine_integration, make_entities
):
    make_entities(component_doc("orders"))  # same name, other kind: not a match
    world.add_repo("orders", description="Orders database")
    integration = engine_integration(entity_kind="Resource", entity_type="database")
    sync_ok(integration)
    row = discovered(integration, "orders")
    assert (row.kind, row.type) == ("Resource", "database")
    assert row.recommended_action == RecommendedAction.REGISTER
    assert row.match_candidates == []

    discovered_import(discovered=row)

    resource = entity("orders", kind="Resource")
    assert (resource.spec_type, resource.description) == ("database", "Orders database")
    assert entity("orders").integration_links == []  # the Component is untouched


def test_custom_kind_rejects_an_invalid_kind_name(connector):
    from integrations import services

    with pytest.raises(ValidationError) as excinfo:
        services.integration_create(connector=connector, name="k", entity_kind="9-bad kind")
    assert "entity_kind" in excinfo.value.message_dict


def test_type_changed_on_the_integration_applies_to_records_discovered_before(
    world, engine_integration
):
    from integrations import services

    world.add_repo("site")
    integration = engine_integration()
    sync_ok(integration)
    services.integration_update(integration=integration, entity_type="website")
    sync_ok(integration)
    row = discovered(integration, "site")
    assert row.type == "website"
    discovered_import(discovered=row)
    assert entity("site").spec_type == "website"
