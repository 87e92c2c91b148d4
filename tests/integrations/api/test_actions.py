"""Actions on one integration: sync, suspend, resume, discovered, import, imported, unlink, runs."""

import pytest

from catalog.models import Entity
from integrations.models import DiscoveredEntity, ImportedEntity, SyncRun
from tests.integrations.api.conftest import API
from tests.integrations.conftest import component_doc


def _import(client, integration, body):
    return client.post(f"{API}/{integration.pk}/import", body, format="json")


# sync, suspend, resume


def test_sync_queues_a_manual_run_that_runs_on_commit(
    world, make_integration, editor_client, django_capture_on_commit_callbacks
):
    world.add_repo("billing")
    integration = make_integration()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = editor_client.post(f"{API}/{integration.pk}/sync")
    assert response.status_code == 202
    assert response.json() == {
        "queued": True,
        "full": False,
        "detail": "Sync of acme queued: repositories changed since the last listing (every "
        "repository when a full listing is due).",
    }
    assert len(callbacks) == 1
    run = SyncRun.objects.get(integration=integration)
    assert (run.trigger, run.state, run.discovered) == ("manual", "succeeded", 1)


def test_sync_of_a_suspended_integration_is_a_conflict(
    make_integration, editor_client, django_capture_on_commit_callbacks
):
    integration = make_integration()
    editor_client.post(f"{API}/{integration.pk}/suspend")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = editor_client.post(f"{API}/{integration.pk}/sync")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "Integration acme is suspended: resume it first"
    assert callbacks == []


def test_suspend_and_resume(make_integration, editor_client):
    integration = make_integration()
    response = editor_client.post(f"{API}/{integration.pk}/suspend")
    assert response.status_code == 200
    assert response.json()["state"] == "suspended"
    integration.refresh_from_db()
    assert not integration.is_enabled
    response = editor_client.post(f"{API}/{integration.pk}/resume")
    assert response.status_code == 200
    assert response.json()["state"] == "enabled"
    assert response.json()["next_sync_at"] is not None


# discovered


def test_discovered_items_carry_the_recommendation(synced, reader_client):
    integration, payments = synced["integration"], synced["entity"]
    body = reader_client.get(f"{API}/{integration.pk}/discovered").json()
    assert body["count"] == 3
    items = {item["name"]: item for item in body["results"]}
    assert list(items) == ["billing", "payments", "search"]
    assert items["payments"]["recommended_action"] == "merge"
    assert items["payments"]["suggested_match"] == {
        "id": payments.pk,
        "ref": "component:default/payments",
    }
    assert items["payments"]["match_candidates"] == [
        {"id": payments.pk, "ref": "component:default/payments"}
    ]
    billing = items["billing"]
    assert billing["recommended_action"] == "register"
    assert billing["suggested_match"] is None
    assert set(billing) == {
        "id",
        "name",
        "external_id",
        "recommended_action",
        "suggested_match",
        "match_candidates",
        "kind",
        "type",
        "state",
        "detected_at",
        "last_seen_at",
        "gone_at",
        "needs_attention",
        "error_since",
        "processing_errors",
        "name_holder",
    }
    assert (billing["needs_attention"], billing["processing_errors"]) == (False, [])
    assert billing["name_holder"] is None
    assert (billing["kind"], billing["type"], billing["state"]) == (
        "Component",
        "service",
        "discovered",
    )
    assert billing["external_id"] == "{repo-000000}"


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"recommended_action": "merge"}, ["payments"]),
        ({"recommended_action": "register"}, ["billing", "search"]),
        ({"search": "AR"}, ["search"]),
        ({"search": "E"}, ["payments", "search"]),
        ({"state": "imported"}, []),
        ({"state": "discovered", "limit": 1, "offset": 1}, ["payments"]),
    ],
)
def test_discovered_filters_and_pages(synced, reader_client, params, names):
    body = reader_client.get(f"{API}/{synced['integration'].pk}/discovered", params).json()
    assert [item["name"] for item in body["results"]] == names


def test_discovered_state_filter_follows_imports(synced, editor_client):
    integration = synced["integration"]
    _import(editor_client, integration, {"discovered_id": synced["discovered"]["billing"].pk})
    body = editor_client.get(f"{API}/{integration.pk}/discovered", {"state": "imported"}).json()
    assert [item["name"] for item in body["results"]] == ["billing"]


def test_discovered_refuses_an_unknown_filter_value(synced, reader_client):
    response = reader_client.get(f"{API}/{synced['integration'].pk}/discovered", {"state": "lost"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "state must be one of discovered, imported, gone, error"
    )


# import


def test_import_one_item_registers(synced, editor_client, editor):
    integration, billing = synced["integration"], synced["discovered"]["billing"]
    response = _import(editor_client, integration, {"discovered_id": billing.pk})
    assert response.status_code == 200
    (result,) = response.json()["results"]
    imported = ImportedEntity.objects.get()
    assert result == {"discovered_id": billing.pk, "ok": True, "imported_id": imported.pk}
    assert (imported.action, imported.imported_by) == ("REGISTER", editor)
    entity = Entity.objects.get(name="billing")
    assert entity.description == "Bills"
    billing.refresh_from_db()
    assert billing.state == "imported"


def test_import_with_a_type_sets_spec_type(synced, editor_client):
    billing = synced["discovered"]["billing"]
    response = _import(
        editor_client, synced["integration"], {"discovered_id": billing.pk, "type": "website"}
    )
    assert response.status_code == 200
    assert Entity.objects.get(name="billing").spec_type == "website"


def test_bulk_import_with_mixed_results_is_207(synced, editor_client):
    integration, d = synced["integration"], synced["discovered"]
    response = _import(
        editor_client,
        integration,
        {
            "items": [
                {"discovered_id": d["billing"].pk},
                {"discovered_id": d["payments"].pk},  # merges into the suggestion
                {"discovered_id": d["search"].pk, "action": "merge"},  # nothing to merge into
                {"discovered_id": 999999},
                {"discovered_id": d["billing"].pk},  # already imported by the first item
            ]
        },
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["ok"] for r in results] == [True, True, False, False, False]
    assert results[2]["error"] == "search has no matching catalog entity: choose one to merge into"
    assert results[3] == {
        "discovered_id": 999999,
        "ok": False,
        "error": "No discovered entity 999999",
    }
    assert results[4]["error"] == "billing is already imported"
    merged = ImportedEntity.objects.get(pk=results[1]["imported_id"])
    assert (merged.action, merged.entity) == ("MERGE", synced["entity"])


def test_bulk_import_where_everything_fails_is_400(synced, editor_client):
    d = synced["discovered"]
    response = _import(
        editor_client,
        synced["integration"],
        {"items": [{"discovered_id": d["payments"].pk, "type": "website"}]},
    )
    assert response.status_code == 400
    assert response.json() == {
        "results": [
            {
                "discovered_id": d["payments"].pk,
                "ok": False,
                "error": "The type cannot be set when merging into an existing entity",
            }
        ]
    }


def test_import_merges_into_an_entity_chosen_by_ref_or_id(synced, editor_client, make_entities):
    finder, other = make_entities(component_doc("finder"), component_doc("other"))
    d = synced["discovered"]
    response = _import(
        editor_client,
        synced["integration"],
        {
            "items": [
                {"discovered_id": d["search"].pk, "action": "merge", "entity_ref": "finder"},
                {"discovered_id": d["billing"].pk, "action": "merge", "entity_id": other.pk},
                {"discovered_id": d["payments"].pk, "entity_ref": "component:default/nope"},
                {"discovered_id": d["payments"].pk, "entity_ref": "bad:"},
            ]
        },
    )
    assert response.status_code == 207
    results = response.json()["results"]
    assert [r["ok"] for r in results] == [True, True, False, False]
    assert ImportedEntity.objects.get(discovered=d["search"]).entity == finder
    assert ImportedEntity.objects.get(discovered=d["billing"]).entity == other
    assert results[2]["error"] == "No catalog entity component:default/nope"
    assert results[3]["error"]


def test_import_refuses_an_invalid_body(synced, editor_client):
    integration = synced["integration"]
    for body in (
        {"items": []},
        {"action": "merge"},
        {"discovered_id": "x"},
        {"discovered_id": 1, "entity_id": 2, "entity_ref": "a"},
    ):
        response = _import(editor_client, integration, body)
        assert response.status_code == 400, body
        assert response.json()["error"]["name"] == "InputError"


def test_import_refuses_an_unknown_action(synced, editor_client):
    billing = synced["discovered"]["billing"]
    response = _import(
        editor_client, synced["integration"], {"discovered_id": billing.pk, "action": "copy"}
    )
    assert response.status_code == 400
    assert response.json()["results"][0]["error"] == (
        "Unknown import action 'copy': use register or merge"
    )


def test_import_of_another_integrations_record_is_refused(synced, editor_client, make_integration):
    other = make_integration("other")
    billing = synced["discovered"]["billing"]
    response = _import(editor_client, other, {"discovered_id": billing.pk})
    assert response.status_code == 400
    assert response.json()["results"][0]["error"] == f"No discovered entity {billing.pk}"


# imported and unlink


@pytest.fixture
def imported(synced, editor_client):
    d = synced["discovered"]
    response = _import(
        editor_client,
        synced["integration"],
        {"items": [{"discovered_id": d["billing"].pk}, {"discovered_id": d["payments"].pk}]},
    )
    assert response.status_code == 200
    return {r["discovered_id"]: r["imported_id"] for r in response.json()["results"]}


def test_imported_items(synced, imported, reader_client):
    body = reader_client.get(f"{API}/{synced['integration'].pk}/imported").json()
    assert body["count"] == 2
    items = {item["entity_name"]: item for item in body["results"]}
    billing = Entity.objects.get(name="billing")
    assert items["billing"] == {
        **items["billing"],
        "id": imported[synced["discovered"]["billing"].pk],
        "discovered_id": synced["discovered"]["billing"].pk,
        "entity_id": billing.pk,
        "entity_ref": "component:default/billing",
        "entity_uid": str(billing.uid),
        "kind": "Component",
        "type": "service",
        "scope": None,
        "action": "REGISTER",
        "status": "Registered",
        "state": "linked",
        "unlinked_at": None,
    }
    assert items["payments"]["status"] == "Merged"
    assert items["payments"]["entity_id"] == synced["entity"].pk


def test_imported_items_name_the_repository_a_merge_came_from(
    synced, editor_client, reader_client, make_entities
):
    (checkout,) = make_entities(component_doc("checkout-service"))
    billing = synced["discovered"]["billing"]
    billing.data = {**billing.data, "url": "https://bitbucket.org/acme/billing-jobs"}
    billing.save(update_fields=["data"])
    merge = {"discovered_id": billing.pk, "action": "merge", "entity_ref": "checkout-service"}
    assert _import(editor_client, synced["integration"], {"items": [merge]}).status_code == 200
    (item,) = reader_client.get(f"{API}/{synced['integration'].pk}/imported").json()["results"]
    assert {
        key: item[key]
        for key in (
            "repository_name",
            "repository_url",
            "repository_state",
            "entity_ref",
            "entity_uid",
            "status",
        )
    } == {
        "repository_name": "billing",
        "repository_url": "https://bitbucket.org/acme/billing-jobs",
        "repository_state": "imported",
        "entity_ref": "component:default/checkout-service",
        "entity_uid": str(checkout.uid),
        "status": "Merged",
    }


def test_imported_items_without_a_web_url_have_an_empty_one(synced, imported, reader_client):
    body = reader_client.get(f"{API}/{synced['integration'].pk}/imported").json()
    assert {(i["repository_name"], i["repository_url"]) for i in body["results"]} == {
        ("billing", ""),
        ("payments", ""),
    }


def test_unlink_keeps_the_entity_and_frees_the_record(synced, imported, editor_client):
    integration = synced["integration"]
    billing = synced["discovered"]["billing"]
    imported_id = imported[billing.pk]
    response = editor_client.post(f"{API}/{integration.pk}/imported/{imported_id}/unlink")
    assert response.status_code == 200
    assert response.json()["state"] == "unlinked"
    assert response.json()["unlinked_at"] is not None
    entity = Entity.objects.get(name="billing")
    assert entity.integration_links == []
    billing.refresh_from_db()
    assert billing.state == "discovered"
    listed = editor_client.get(f"{API}/{integration.pk}/imported", {"state": "unlinked"}).json()
    assert [item["id"] for item in listed["results"]] == [imported_id]
    linked = editor_client.get(f"{API}/{integration.pk}/imported", {"state": "linked"}).json()
    assert [item["entity_name"] for item in linked["results"]] == ["payments"]
    # Unlinking twice is harmless.
    again = editor_client.post(f"{API}/{integration.pk}/imported/{imported_id}/unlink")
    assert again.status_code == 200


def test_imported_search_filter(synced, imported, reader_client):
    body = reader_client.get(f"{API}/{synced['integration'].pk}/imported", {"search": "PAY"}).json()
    assert [item["entity_name"] for item in body["results"]] == ["payments"]


def test_unlink_of_another_integrations_import_is_404(
    synced, imported, editor_client, make_integration
):
    other = make_integration("other")
    imported_id = next(iter(imported.values()))
    response = editor_client.post(f"{API}/{other.pk}/imported/{imported_id}/unlink")
    assert response.status_code == 404
    assert ImportedEntity.objects.get(pk=imported_id).state == "linked"


# runs


def test_runs_newest_first_and_paginated(synced, reader_client, make_integration):
    from integrations.engine.sync import integration_sync

    integration = synced["integration"]
    integration_sync(integration_id=integration.pk, trigger="schedule")
    body = reader_client.get(f"{API}/{integration.pk}/runs").json()
    assert body["count"] == 2
    assert [run["trigger"] for run in body["results"]] == ["schedule", "manual"]
    first = body["results"][1]
    assert (first["state"], first["discovered"]) == ("succeeded", 3)
    page = reader_client.get(f"{API}/{integration.pk}/runs", {"limit": 1, "offset": 1}).json()
    assert [run["id"] for run in page["results"]] == [first["id"]]
    assert DiscoveredEntity.objects.filter(integration=integration).count() == 3
