"""Recommendations that are never stale: rule changes on every path, catalog changes by anyone
but the integration's own sync, and names already taken (issue #15, item 5)."""

import json
import textwrap

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Entity
from catalog.services import entities_upsert, entity_delete, entity_upsert
from integrations import services
from integrations.choices import DiscoveredState, RecommendedAction
from integrations.config import config_apply, config_load
from integrations.engine.discovery import entity_changes_source_of
from integrations.engine.imports import (
    ImportRefused,
    ImportRequest,
    discovered_import,
    discovered_import_many,
)
from integrations.models import DiscoveredEntity, Integration
from tests.integrations.conftest import component_doc
from tests.integrations.engine.conftest import discovered, sync_ok

SLUG_ANNOTATION = "fake.example/slug"
SLUG_RULE = [
    {
        "ingested": "slug",
        "catalog": f'metadata.annotations."{SLUG_ANNOTATION}"',
        "operator": "equals",
    }
]


def annotated(name: str, slug: str) -> dict:
    return component_doc(name, metadata={"annotations": {SLUG_ANNOTATION: slug}})


def advice(integration, name: str) -> tuple[str, str | None, str | None]:
    row = discovered(integration, name)
    suggested = row.suggested_entity.name if row.suggested_entity else None
    holder = row.name_holder.name if row.name_holder else None
    return row.recommended_action, suggested, holder


@pytest.fixture
def acme(world, engine_integration, django_capture_on_commit_callbacks):
    """An integration synced once: "payments" and "search" are new (Register), and the catalog
    holds "legacy-payments", annotated with the payments slug, which the default rule (name)
    does not match."""
    world.add_repo("payments")
    world.add_repo("search")
    # Delivered now: the test's transaction never commits, and a later write of the same
    # transaction would join this delivery instead of being captured on its own.
    with django_capture_on_commit_callbacks(execute=True):
        entities_upsert(documents=[annotated("legacy-payments", "payments")])
    integration = engine_integration("acme")
    sync_ok(integration)
    assert advice(integration, "payments") == (RecommendedAction.REGISTER, None, None)
    return integration


# -- rule changes: every path recomputes at once --------------------------------------------


def test_rules_changed_by_the_service_recompute_at_once(acme):
    services.integration_update(integration=acme, correlation=SLUG_RULE)
    assert advice(acme, "payments") == (RecommendedAction.MERGE, "legacy-payments", None)
    assert advice(acme, "search") == (RecommendedAction.REGISTER, None, None)

    services.integration_update(
        integration=acme,
        correlation=[{"ingested": "name", "catalog": "metadata.name", "operator": "equals"}],
    )
    assert advice(acme, "payments") == (RecommendedAction.REGISTER, None, None)


def test_rules_changed_through_the_api_recompute_at_once(acme, make_user, bearer_client):
    client = bearer_client(make_user("editor", "integrations.edit_integration"))
    response = client.patch(
        f"/api/integrations/{acme.pk}", {"correlation": SLUG_RULE}, format="json"
    )
    if response.status_code == 301:  # trailing-slash style
        response = client.patch(
            f"/api/integrations/{acme.pk}/", {"correlation": SLUG_RULE}, format="json"
        )
    assert response.status_code == 200, response.content
    assert advice(acme, "payments") == (RecommendedAction.MERGE, "legacy-payments", None)
    listed = client.get(f"/api/integrations/{acme.pk}/discovered").json()
    payments = next(item for item in listed["results"] if item["name"] == "payments")
    assert payments["recommended_action"] == RecommendedAction.MERGE


def test_rules_changed_in_the_configuration_page_recompute_at_once(acme, client, make_user):
    client.force_login(make_user("editor", "integrations.edit_integration"))
    data = {
        "name": "acme",
        "connector": acme.connector_id,
        "workspace": "acme",
        "registration": "register_and_merge",
        "entity_kind": "Component",
        "entity_type": "service",
        "rule_ingested": ["slug"],
        "rule_operator": ["equals"],
        "rule_catalog": [f'metadata.annotations."{SLUG_ANNOTATION}"'],
        "mapping_path": [m.catalog_path for m in acme.field_mappings.all()],
        "mapping_expression": [m.expression for m in acme.field_mappings.all()],
        "update_frequency": "180",
    }
    response = client.post(f"/integrations/{acme.pk}/configuration/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert advice(acme, "payments") == (RecommendedAction.MERGE, "legacy-payments", None)


def test_rules_changed_in_the_admin_recompute_at_once(acme, admin_client):
    from tests.integrations.test_admin import admin_url, form_data

    url = admin_url(Integration, "change", acme.pk)
    data = form_data(admin_client.get(url))
    data["correlation_rules-0-ingested_path"] = "slug"
    data["correlation_rules-0-catalog_path"] = f'metadata.annotations."{SLUG_ANNOTATION}"'
    response = admin_client.post(url, data)
    assert response.status_code == 302
    assert advice(acme, "payments") == (RecommendedAction.MERGE, "legacy-payments", None)


def test_rules_changed_by_apply_config_recompute_at_once(acme, tmp_path):
    path = tmp_path / "lantern.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            connectors:
              - name: fake
                provider: fake
                auth: {{kind: none}}
                config: {json.dumps(acme.connector.config)}
            integrations:
              - name: acme
                connector: fake
                correlation:
                  - ingested: slug
                    catalog: 'metadata.annotations."{SLUG_ANNOTATION}"'
                    operator: equals
            """
        )
    )
    config_apply(config_load(path))
    assert list(acme.correlation_rules.values_list("ingested_path", flat=True)) == ["slug"]
    assert advice(acme, "payments") == (RecommendedAction.MERGE, "legacy-payments", None)


def test_a_registration_change_recomputes_conflicts(acme):
    entities_upsert(documents=[component_doc("search")])  # outside a commit hook: no recompute
    services.integration_update(integration=acme, registration="register")
    search = Entity.objects.get(name="search")
    # Register-only cannot merge: a taken name is a conflict naming its holder.
    assert advice(acme, "search") == (RecommendedAction.CONFLICT, "search", "search")
    assert discovered(acme, "search").name_holder == search


# -- catalog changes by others: no sync needed ---------------------------------------------


def test_an_entity_imported_by_import_catalog_flips_register_to_merge(
    acme, tmp_path, django_capture_on_commit_callbacks
):
    (tmp_path / "catalog-info.yaml").write_text(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
        "metadata: {name: search}\nspec: {type: service, lifecycle: production, owner: a}\n"
    )
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_catalog", str(tmp_path))
    assert advice(acme, "search") == (RecommendedAction.MERGE, "search", None)


def test_a_taken_name_the_rules_do_not_match_is_a_conflict_naming_the_holder(
    acme, django_capture_on_commit_callbacks
):
    services.integration_update(integration=acme, correlation=SLUG_RULE)
    with django_capture_on_commit_callbacks(execute=True):
        (holder,) = entities_upsert(documents=[annotated("search", "not-search")]).entities
    assert advice(acme, "search") == (RecommendedAction.CONFLICT, None, "search")

    with pytest.raises(ImportRefused, match="component:default/search already exists"):
        discovered_import(discovered=discovered(acme, "search"))

    # Deleting the holder frees the name: Register again.
    with django_capture_on_commit_callbacks(execute=True):
        entity_delete(entity=holder)
    assert advice(acme, "search") == (RecommendedAction.REGISTER, None, None)


def test_another_integrations_register_flips_this_ones_advice(
    world, acme, make_integration, django_capture_on_commit_callbacks
):
    beta = make_integration("beta", secondary_kinds=[], target={"workspace": "beta"})
    sync_ok(beta)
    with django_capture_on_commit_callbacks(execute=True):
        discovered_import(discovered=discovered(beta, "search"), action="register")
    assert advice(acme, "search") == (RecommendedAction.MERGE, "search", None)


def test_deleting_or_renaming_the_suggested_entity_flips_it_back(
    acme, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        search = entity_upsert(document=component_doc("search"))
    assert advice(acme, "search") == (RecommendedAction.MERGE, "search", None)

    # A rename (as the admin makes one: the columns, then the entity re-indexed).
    from catalog.services import entities_index

    with django_capture_on_commit_callbacks(execute=True):
        search.name = "search-old"
        search.save()
        entities_index(entities=[search])
    assert advice(acme, "search") == (RecommendedAction.REGISTER, None, None)
    assert discovered(acme, "search").match_candidates == []

    with django_capture_on_commit_callbacks(execute=True):
        search.name = "search"
        search.save()
        entities_index(entities=[search])
    assert advice(acme, "search") == (RecommendedAction.MERGE, "search", None)
    with django_capture_on_commit_callbacks(execute=True):
        entity_delete(entity=search)
    assert advice(acme, "search") == (RecommendedAction.REGISTER, None, None)
    assert discovered(acme, "search").match_candidates == []


def test_a_thousand_entities_imported_at_once_cost_one_recompute_per_integration(
    acme, django_capture_on_commit_callbacks, monkeypatch
):
    from integrations import tasks

    calls = []
    real = tasks.recommendations_recompute

    def recompute(integration_id, entity_ids=None, deleted_refs=None):
        calls.append((integration_id, len(entity_ids or ())))
        return real(integration_id, entity_ids, deleted_refs)

    monkeypatch.setattr(tasks.recommendations_recompute, "delay", recompute)
    documents = [component_doc(f"bulk-{n}") for n in range(1000)] + [component_doc("search")]
    with django_capture_on_commit_callbacks(execute=True):
        entities_upsert(documents=documents)
    assert calls == [(acme.pk, 1001)]
    assert advice(acme, "search") == (RecommendedAction.MERGE, "search", None)


def test_the_integrations_own_labelled_writes_do_not_trigger_a_recompute(
    acme, django_capture_on_commit_callbacks, monkeypatch
):
    from catalog.services import entity_changes_source
    from integrations import tasks

    calls = []
    monkeypatch.setattr(tasks.recommendations_recompute, "delay", lambda *a: calls.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        with entity_changes_source(entity_changes_source_of(acme.pk)):
            entities_upsert(documents=[component_doc("search")])
    assert calls == []


# -- the bulk import then succeeds --------------------------------------------------------


def test_the_bulk_import_succeeds_for_records_flipped_by_a_catalog_change(
    world, engine_integration, django_capture_on_commit_callbacks
):
    for n in range(5):
        world.add_repo(f"svc-{n}")
    integration = engine_integration("bulk")
    sync_ok(integration)
    with django_capture_on_commit_callbacks(execute=True):
        entities_upsert(documents=[component_doc(f"svc-{n}") for n in range(3)])
    rows = DiscoveredEntity.objects.filter(integration=integration).order_by("name")
    assert [row.recommended_action for row in rows] == ["merge"] * 3 + ["register"] * 2
    results = discovered_import_many(
        integration=integration, requests=[ImportRequest(row.pk) for row in rows]
    )
    assert [error for _, _, error in results] == [""] * 5
    assert not DiscoveredEntity.objects.filter(
        integration=integration, state=DiscoveredState.DISCOVERED
    ).exists()


# -- cost: through the index, a constant number of statements --------------------------------


def _statements(callable_) -> int:
    with CaptureQueriesContext(connection) as context:
        callable_()
    return len(context.captured_queries)


@pytest.mark.parametrize("records", [10, 120])
def test_recomputes_cost_the_same_statements_whatever_the_number_of_records(
    world, engine_integration, records, request
):
    for n in range(records):
        world.add_repo(f"repo-{n}")
    integration = engine_integration("counted")
    sync_ok(integration)
    created = entities_upsert(
        documents=[component_doc(f"repo-{n}") for n in range(0, records, 2)]
    ).entities
    ids = [entity.pk for entity in created]

    full = _statements(
        lambda: services.integration_recommendations_refresh(integration=integration)
    )
    assert DiscoveredEntity.objects.filter(recommended_action="merge").count() == records // 2
    entity_delete(entity=created[0])
    partial = _statements(
        lambda: services.integration_recommendations_refresh(
            integration=integration, entity_ids=ids[:1], deleted_refs=["component:default/repo-0"]
        )
    )
    assert advice(integration, "repo-0") == (RecommendedAction.REGISTER, None, None)
    # Full: rules, entities, mappings, records, names held, unlinked registrations, update.
    assert full <= 7
    # Partial: the changed entities, rules, (their index), mappings, records, names, update.
    assert partial <= 7
