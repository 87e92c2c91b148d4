"""A custom mapping that makes an entity invalid is an error on its record, never a dropped
record: the import (or refresh) of that repository is refused with the field and value named and
the mapping to fix, everything stored stays as it was, and once the mapping is fixed the next
sync imports (or refreshes) it and clears the error. Over both sandboxes, real sockets."""

import pytest

from catalog.models import Entity
from catalog.rendering import entity_document
from catalog.validation import as_label_value, validate_entity_document
from integrations import services
from integrations.choices import DiscoveredState, ProcessingStage, SyncState
from integrations.engine.imports import (
    discovered_errors_retry,
    discovered_import,
    discovered_import_new,
)
from integrations.engine.processing import RunErrors
from integrations.models import DiscoveredEntity, ImportedEntity
from integrations.providers.bitbucket_shared import BITBUCKET_FIELD_MAPPINGS
from tests.integrations.engine.conftest import sync
from tests.integrations.engine.test_valid_values import (  # noqa: F401 (fixtures)
    hostile,  # noqa: F401
    is_label_value,
    make_cloud_sandbox,
    make_dc_sandbox,
    sandbox_settings,
)

HINT = "integration settings → mappings"
# A page's auto-import with its refusals recorded: lookups (the repositories other integrations
# imported included), one upsert, bulk links, one error write and the lookup of the entities
# linked to the failed records (whose status.items show their errors).
QUERIES = 19
SPACED = {"data pipeline (v2)", "Café Über Service", "Personal Notes"}


def mappings(**extra: str) -> dict[str, str]:
    return {**BITBUCKET_FIELD_MAPPINGS, **{f"metadata.labels.{k}": v for k, v in extra.items()}}


def entity_of(row: DiscoveredEntity) -> Entity:
    return ImportedEntity.objects.select_related("entity").get(discovered=row).entity


def rows(integration) -> dict[str, DiscoveredEntity]:
    return {row.name: row for row in DiscoveredEntity.objects.filter(integration=integration)}


def names_of(integration) -> dict[str, str]:
    """Record name → the repository's display name (what ``name`` maps)."""
    return {name: row.data["name"] for name, row in rows(integration).items()}


@pytest.mark.django_db
def test_an_invalid_label_mapping_is_an_import_error_naming_the_field_and_its_mapping(
    hostile,  # noqa: F811
):
    integration, _ = hostile
    services.integration_update(integration=integration, field_mappings=mappings(team="name"))

    run = sync(integration)

    display = names_of(integration)
    invalid = {name for name, value in display.items() if not is_label_value(value)}
    spaced = {name for name, value in display.items() if value in SPACED}
    assert len(spaced) == len(SPACED) and spaced <= invalid < set(display)
    assert (run.state, run.errors) == (SyncState.PARTIAL, len(invalid))
    assert run.imported == len(display) - len(invalid)
    (group,) = run.error_summary
    assert (group["stage"], group["reason"], group["count"]) == (
        "import",
        "invalid entity",
        len(invalid),
    )
    assert HINT in group["hint"]
    for name, row in rows(integration).items():
        if name not in invalid:
            assert row.state == DiscoveredState.IMPORTED and row.processing_errors == {}
            continue
        assert row.state == DiscoveredState.DISCOVERED and row.error_since is not None
        error = row.processing_errors[ProcessingStage.IMPORT]
        assert error["reason"] == "invalid entity"
        assert "metadata.labels.team" in error["message"]
        assert repr(display[name]) in error["message"]
        assert "metadata.labels.team ← name" in error["hint"] and HINT in error["hint"]
        assert error["run_id"] == run.pk


@pytest.mark.django_db
def test_once_the_mapping_is_fixed_the_next_sync_imports_the_records_and_clears_their_errors(
    hostile,  # noqa: F811
):
    integration, _ = hostile
    services.integration_update(integration=integration, field_mappings=mappings(team="name"))
    assert sync(integration).state == SyncState.PARTIAL
    display = names_of(integration)
    invalid = {name for name, value in display.items() if not is_label_value(value)}
    imported_before = set(Entity.objects.values_list("uid", flat=True))
    assert len(imported_before) == len(display) - len(invalid)

    fixed = mappings(team="to_label_value(name)")
    services.integration_update(integration=integration, field_mappings=fixed)
    run = sync(integration)

    assert (run.state, run.errors, run.error_summary) == (SyncState.SUCCEEDED, 0, [])
    assert run.imported == len(invalid)
    for row in rows(integration).values():
        assert row.state == DiscoveredState.IMPORTED
        assert (row.processing_errors, row.error_since) == ({}, None)
        entity = entity_of(row)
        assert validate_entity_document(entity_document(entity)) == []
        assert entity.labels["team"] == as_label_value(row.data["name"])
    # What was imported before is still there, the same entities.
    assert imported_before <= set(Entity.objects.values_list("uid", flat=True))


@pytest.mark.django_db
def test_an_invalid_name_mapping_is_an_import_error_naming_metadata_name(hostile):  # noqa: F811
    integration, _ = hostile
    services.integration_update(
        integration=integration,
        field_mappings={**BITBUCKET_FIELD_MAPPINGS, "metadata.name": "name"},
    )
    run = sync(integration)
    assert run.state == SyncState.PARTIAL
    error = rows(integration)["data-pipeline-v2"].processing_errors["import"]
    assert error["reason"] == "invalid entity"
    assert "metadata.name: 'data pipeline (v2)' is not a valid name" in error["message"]
    assert "metadata.name ← name" in error["hint"]
    assert Entity.objects.filter(name="config.v1.2").exists()  # a valid name imports


@pytest.mark.django_db
def test_an_invalid_mapping_on_refresh_keeps_the_stored_entity_and_records_the_error(
    hostile,  # noqa: F811
):
    integration, _ = hostile
    assert sync(integration).state == SyncState.SUCCEEDED
    before = {row.name: entity_document(entity_of(row)) for row in rows(integration).values()}
    display = names_of(integration)
    invalid = {name for name, value in display.items() if not is_label_value(value)}
    assert invalid

    services.integration_update(integration=integration, field_mappings=mappings(team="name"))
    run = sync(integration, full=True)

    assert (run.state, run.errors) == (SyncState.PARTIAL, len(invalid))
    assert [(g["stage"], g["reason"]) for g in run.error_summary] == [("refresh", "invalid entity")]
    assert Entity.objects.count() == len(before)  # nothing lost
    for name, row in rows(integration).items():
        assert row.state == DiscoveredState.IMPORTED
        current = entity_document(entity_of(row))
        assert current["metadata"]["name"] == before[name]["metadata"]["name"]  # not renamed
        if name in invalid:
            # Left as it was, but for the error it now shows, as Backstage's status.items.
            (item,) = current.pop("status")["items"]
            for document in (current, before[name]):
                document["metadata"].pop("etag")
            assert current == before[name]
            error = row.processing_errors[ProcessingStage.REFRESH]
            assert error["reason"] == "invalid entity"
            assert "metadata.labels.team" in error["message"] and HINT in error["hint"]
            assert (item["type"], item["level"], item["error"]["name"]) == (
                "backstage.io/catalog-processing",
                "error",
                "InputError",
            )
            assert item["error"]["message"].startswith(f"Refresh: {error['message']}")
            assert item["message"] == f"InputError: {item['error']['message']}"
        else:
            assert current["metadata"]["labels"]["team"] == display[name]
            assert row.processing_errors == {} and "status" not in current

    services.integration_update(
        integration=integration, field_mappings=mappings(team="to_label_value(name)")
    )
    run = sync(integration, full=True)
    assert (run.state, run.errors) == (SyncState.SUCCEEDED, 0)
    for name, row in rows(integration).items():
        assert (row.processing_errors, row.error_since) == ({}, None)
        assert entity_of(row).labels["team"] == as_label_value(display[name])
        assert entity_of(row).status_items == []  # the refresh that succeeded cleared them


@pytest.mark.django_db
def test_the_errors_retry_imports_and_refreshes_from_stored_data_without_a_listing(
    hostile,  # noqa: F811
):
    integration, server = hostile
    services.integration_update(integration=integration, field_mappings=mappings(team="name"))
    sync(integration)
    failed = {row.pk for row in rows(integration).values() if row.processing_errors}
    assert failed
    services.integration_update(
        integration=integration, field_mappings=mappings(team="to_label_value(name)")
    )
    server.api.log.reset()
    errors = RunErrors()
    # Records a run's pages handled already are left to them.
    assert discovered_errors_retry(integration=integration, errors=errors, exclude=failed) == 0

    assert discovered_errors_retry(integration=integration, errors=errors) == len(failed)
    errors.flush()

    assert server.api.log.entries() == []  # from what the last listing stored
    assert errors.count == 0
    for row in rows(integration).values():
        assert row.state == DiscoveredState.IMPORTED
        assert (row.processing_errors, row.error_since) == ({}, None)
    assert discovered_errors_retry(integration=integration, errors=RunErrors()) == 0  # all done


@pytest.mark.django_db
def test_an_import_outside_a_run_records_its_refusal_at_once(hostile):  # noqa: F811
    integration, _ = hostile
    services.integration_update(
        integration=integration, auto_import=False, field_mappings=mappings(team="name")
    )
    sync(integration)
    row = next(r for r in rows(integration).values() if r.data["name"] == "data pipeline (v2)")
    assert discovered_import_new(integration=integration, rows=[row]) == 0
    row.refresh_from_db()
    assert row.processing_errors["import"]["reason"] == "invalid entity"
    assert row.processing_errors["import"]["run_id"] is None

    services.integration_update(
        integration=integration, field_mappings=mappings(team="to_label_value(name)")
    )
    row.refresh_from_db()
    discovered_import(discovered=row)  # a person imports it: the error goes
    row.refresh_from_db()
    assert (row.state, row.processing_errors, row.error_since) == (
        DiscoveredState.IMPORTED,
        {},
        None,
    )


@pytest.mark.django_db
def test_an_expression_that_fails_on_a_record_is_an_error_not_a_missing_field(
    hostile,  # noqa: F811
):
    integration, _ = hostile
    assert sync(integration).state == SyncState.SUCCEEDED
    imported = rows(integration)
    before = {name: entity_document(entity_of(row)) for name, row in imported.items()}
    # ``tags`` is a list: to_label_value() refuses it on every record.
    broken = mappings(team="to_label_value(tags)")
    services.integration_update(integration=integration, field_mappings=broken)

    run = sync(integration, full=True)

    assert (run.state, run.errors) == (SyncState.PARTIAL, len(imported))
    for name, row in rows(integration).items():
        error = row.processing_errors[ProcessingStage.REFRESH]
        assert error["reason"] == "mapping failed"
        assert "metadata.labels.team ← to_label_value(tags) failed" in error["message"]
        assert "invalid type for value" in error["message"] and HINT in error["hint"]
        current = entity_document(entity_of(row))
        (item,) = current.pop("status")["items"]  # shown as Backstage's status.items
        assert item["error"]["name"] == "InputError" and error["message"] in item["message"]
        for document in (current, before[name]):
            document["metadata"].pop("etag")
        assert current == before[name]  # otherwise left as it was


@pytest.mark.django_db
def test_recording_the_refusals_of_a_page_costs_no_statement_per_record(
    hostile,  # noqa: F811
    django_assert_max_num_queries,
):
    integration, _ = hostile
    services.integration_update(
        integration=integration, auto_import=False, field_mappings=mappings(team="name")
    )
    sync(integration)
    page = list(DiscoveredEntity.objects.filter(integration=integration).order_by("pk"))
    errors = RunErrors()
    with django_assert_max_num_queries(QUERIES):
        imported = discovered_import_new(integration=integration, rows=page, errors=errors)
        errors.flush()
    assert 0 < imported < len(page) and errors.count == len(page) - imported
