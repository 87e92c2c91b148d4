"""Correlation rules: equals / contains over custom JMESPath paths, ANDed, through a sync."""

import pytest

from catalog.models import Entity
from integrations.choices import RecommendedAction
from tests.integrations.conftest import component_doc
from tests.integrations.engine.conftest import discovered, sync_ok


def doc(name: str, *, tags=(), description: str = "", annotations=None) -> dict:
    metadata = {"tags": list(tags), "annotations": annotations or {}}
    if description:
        metadata["description"] = description
    return component_doc(name, metadata=metadata)


def recommendation(integration, name: str) -> tuple[str, str | None, list[str]]:
    row = discovered(integration, name)
    suggested = row.suggested_entity.name if row.suggested_entity else None
    return (
        row.recommended_action,
        suggested,
        sorted(candidate["ref"].split("/")[-1] for candidate in row.match_candidates),
    )


def test_equals_on_a_quoted_annotation_path_matches_case_insensitively(
    world, engine_integration, make_entities
):
    make_entities(
        doc("legacy-payments", annotations={"fake.example/slug": "PAYMENTS"}),
        doc("decoy", annotations={"fake.example/slug": "payments-v2"}),
    )
    world.add_repo("Payments")  # slug "payments"
    world.add_repo("unknown")
    rule = {
        "ingested": "slug",
        "catalog": 'metadata.annotations."fake.example/slug"',
        "operator": "equals",
    }
    integration = engine_integration(correlation=[rule])
    sync_ok(integration)

    assert recommendation(integration, "Payments") == (
        RecommendedAction.MERGE,
        "legacy-payments",
        ["legacy-payments"],
    )
    assert recommendation(integration, "unknown") == (RecommendedAction.REGISTER, None, [])


def test_default_rule_matches_repository_name_to_entity_name(
    world, engine_integration, make_entities
):
    make_entities(doc("search"))
    world.add_repo("Search")
    world.add_repo("searcher")
    integration = engine_integration()
    sync_ok(integration)
    assert recommendation(integration, "Search") == (RecommendedAction.MERGE, "search", ["search"])
    assert recommendation(integration, "searcher") == (RecommendedAction.REGISTER, None, [])


def test_contains_on_a_list_matches_an_equal_item_only(world, engine_integration, make_entities):
    make_entities(
        doc("tagged", tags=["java", "pay"]),
        doc("prefix-only", tags=["payments"]),
    )
    world.add_repo("repo-one", project_key="PAY")
    rule = {"ingested": "project.key", "catalog": "metadata.tags", "operator": "contains"}
    integration = engine_integration(correlation=[rule])
    sync_ok(integration)
    assert recommendation(integration, "repo-one") == (
        RecommendedAction.MERGE,
        "tagged",
        ["tagged"],
    )


def test_contains_on_a_string_needs_the_whole_word_sequence(
    world, engine_integration, make_entities
):
    make_entities(
        doc("gateway", description="The API gateway, for payments."),
        doc("glued", description="apigateway service"),
        doc("reversed", description="gateway api"),
        doc("partial", description="payments platform"),
    )
    world.add_repo("api-gateway")
    world.add_repo("pay")
    world.add_repo("Payments")
    rule = {"ingested": "name", "catalog": "metadata.description", "operator": "contains"}
    integration = engine_integration(correlation=[rule])
    sync_ok(integration)

    assert recommendation(integration, "api-gateway") == (
        RecommendedAction.MERGE,
        "gateway",
        ["gateway"],
    )
    assert recommendation(integration, "pay") == (RecommendedAction.REGISTER, None, [])
    # "payments" is a whole word of two descriptions: ambiguous, nothing guessed.
    assert recommendation(integration, "Payments") == (
        RecommendedAction.REGISTER,
        None,
        ["gateway", "partial"],
    )


def test_equals_does_not_match_a_word_inside_a_string(world, engine_integration, make_entities):
    make_entities(doc("gateway", description="The API gateway"))
    world.add_repo("gateway")
    rule = {"ingested": "name", "catalog": "metadata.description", "operator": "equals"}
    integration = engine_integration(correlation=[rule])
    sync_ok(integration)
    # The rule does not match, and a Register would take a name the catalog holds.
    assert recommendation(integration, "gateway") == (RecommendedAction.CONFLICT, None, [])


def test_ambiguous_matches_recommend_register_and_list_every_candidate(
    world, engine_integration, make_entities
):
    make_entities(doc("billing-one", tags=["billing"]), doc("billing-two", tags=["billing"]))
    world.add_repo("billing")
    rule = {"ingested": "slug", "catalog": "metadata.tags", "operator": "contains"}
    integration = engine_integration(correlation=[rule])
    sync_ok(integration)
    assert recommendation(integration, "billing") == (
        RecommendedAction.REGISTER,
        None,
        ["billing-one", "billing-two"],
    )


def test_several_rules_are_anded(world, engine_integration, make_entities):
    make_entities(
        doc("both", tags=["pay"], description="the api gateway"),
        doc("tag-only", tags=["pay"], description="something else"),
        doc("text-only", tags=["ops"], description="api gateway mirror"),
    )
    world.add_repo("api-gateway", project_key="PAY")
    world.add_repo("api-gateway-ops", project_key="OPS")
    rules = [
        {"ingested": "project.key", "catalog": "metadata.tags", "operator": "contains"},
        {"ingested": "name", "catalog": "metadata.description", "operator": "contains"},
    ]
    integration = engine_integration(correlation=rules)
    sync_ok(integration)

    # Each rule alone is ambiguous for this record; together they pick one entity.
    assert recommendation(integration, "api-gateway") == (RecommendedAction.MERGE, "both", ["both"])
    # tags match text-only, but the description lacks "api gateway ops": no match.
    assert recommendation(integration, "api-gateway-ops") == (RecommendedAction.REGISTER, None, [])


def test_recommendations_follow_catalog_changes_on_the_next_sync(
    world, engine_integration, make_entities
):
    world.add_repo("late")
    integration = engine_integration()
    sync_ok(integration)
    assert recommendation(integration, "late") == (RecommendedAction.REGISTER, None, [])
    make_entities(doc("late"))
    sync_ok(integration)
    assert recommendation(integration, "late") == (RecommendedAction.MERGE, "late", ["late"])


def test_imported_records_keep_their_advice_and_unlinked_ones_get_fresh_advice(
    world, engine_integration
):
    from integrations.engine.imports import imported_unlink
    from integrations.models import ImportedEntity

    world.add_repo("svc")
    integration = engine_integration(auto_import=True)
    sync_ok(integration)
    assert recommendation(integration, "svc") == (RecommendedAction.REGISTER, None, [])
    # The entity it registered now matches it by name; the record keeps the advice it was
    # imported on instead of being told to merge into its own entity.
    sync_ok(integration)
    assert recommendation(integration, "svc") == (RecommendedAction.REGISTER, None, [])

    imported_unlink(imported=ImportedEntity.objects.get(discovered__name="svc"))
    sync_ok(integration)
    assert recommendation(integration, "svc") == (RecommendedAction.MERGE, "svc", ["svc"])


def test_index_update_reindexes_an_entity_the_run_changed(world, engine_integration, make_entities):
    from catalog.models import Entity
    from catalog.services import entities_upsert
    from integrations.engine.correlation import correlation_index_build, index_entities

    make_entities(doc("one", tags=["pay"]))
    rule = {"ingested": "project.key", "catalog": "metadata.tags", "operator": "contains"}
    integration = engine_integration(correlation=[rule])
    index = correlation_index_build(integration=integration)
    (one,) = Entity.objects.filter(name="one")
    assert index.match({"project": {"key": "PAY"}}) == [one.pk]

    entities_upsert(documents=[doc("one", tags=["ops"]), doc("two", tags=["pay"])])
    index.update(index_entities(Entity.objects.all()))

    (two,) = Entity.objects.filter(name="two")
    assert index.match({"project": {"key": "PAY"}}) == [two.pk]
    assert index.match({"project": {"key": "OPS"}}) == [one.pk]
    assert index.changed


@pytest.mark.parametrize(
    "path",
    [
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "metadata.title",
        "metadata.description",
        "metadata.tags",
        "metadata.labels.tier",
        'metadata.annotations."bitbucket.org/repo-url"',
        "metadata.annotations.missing",
        "metadata.links",
        "metadata.owner_hint",
        "metadata.integration",
        "metadata.name.deeper",
        "spec.owner",
        "spec.nested.level.value",
        "spec.list.item",
        "spec",
        "kind",
        "apiVersion",
        "integration_properties.bitbucket.slug",
    ],
)
@pytest.mark.django_db
def test_column_getters_read_what_searching_the_rendered_document_finds(path):
    """The index reads plain field chains from columns instead of rendering each document: for
    every shape of entity the value must be the one the JMESPath search of the document gives."""
    from catalog.rendering import entity_document
    from catalog.services import entities_ingested_write, entities_upsert
    from integrations.engine.correlation import column_getter, index_entities
    from integrations.engine.mapping import search

    full = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "full",
            "title": "Full",
            "description": "All of it",
            "tags": ["java"],
            "labels": {"tier": "one"},
            "annotations": {"bitbucket.org/repo-url": "https://bitbucket.org/acme/full"},
            "links": [{"url": "https://example.com"}],
            "owner_hint": "team-a",
        },
        "spec": {
            "type": "service",
            "lifecycle": "production",
            "owner": "team-a",
            "nested": {"level": {"value": 3}},
            "list": [{"item": 1}],
        },
    }
    bare = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "bare"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-b"},
    }
    entities = entities_upsert(documents=[full, bare]).entities
    entities_ingested_write(
        ingested={entities[0].pk: ([{"integration_id": 1}], {"bitbucket": {"slug": "full"}})}
    )
    getter = column_getter(path)
    assert getter is not None
    for entity in index_entities(Entity.objects.all()):
        expected = search(path, entity_document(Entity.objects.get(pk=entity.pk)))
        assert getter(entity) == expected, (path, entity.name)


@pytest.mark.parametrize("path", ["metadata.tags[0]", "spec.*", "metadata.name || kind", "[kind]"])
def test_expressions_other_than_field_chains_are_searched_in_the_document(path):
    from integrations.engine.correlation import column_getter

    assert column_getter(path) is None
