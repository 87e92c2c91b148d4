"""Unlink, suspend / resume, delete, auto-import and bulk import."""

from datetime import timedelta

import pytest

from catalog.models import Entity
from integrations import services
from integrations.choices import (
    DiscoveredState,
    ImportAction,
    IntegrationState,
    LinkState,
    SyncState,
)
from integrations.engine.imports import (
    ImportRefused,
    ImportRequest,
    discovered_import,
    discovered_import_many,
    imported_unlink,
)
from integrations.models import (
    Commit,
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    PullRequest,
    SyncRun,
)
from tests.integrations.conftest import component_doc
from tests.integrations.engine.conftest import discovered, entity, sync, sync_ok


def describe(world, name: str, description: str) -> None:
    """Change a repository in the world the way a push would (new description, newer stamp)."""
    repo = next(repo for repo in world.repos if repo.name == name)
    repo.description = description
    repo.updated_on += timedelta(hours=1)


# -- unlink --------------------------------------------------------------------------------------


def test_unlink_keeps_the_entity_and_its_data_and_stops_refresh(world, engine_integration):
    world.add_repo("kept", description="v1")
    world.add_repo("dropped", description="v1")
    integration = engine_integration(auto_import=True)
    sync_ok(integration)
    dropped = entity("dropped")
    assert [item["integration_name"] for item in dropped.integration_links] == ["acme"]
    assert dropped.integration_properties["Fake"]["name"] == "dropped"

    imported_unlink(imported=ImportedEntity.objects.get(entity=dropped))

    dropped.refresh_from_db()
    assert dropped.integration_links == []
    assert dropped.integration_properties == {}
    assert dropped.description == "v1"
    assert dropped.annotations["fake.example/repo-url"] == "https://fake.example/dropped"
    assert discovered(integration, "dropped").state == DiscoveredState.DISCOVERED

    describe(world, "kept", "v2")
    describe(world, "dropped", "v2")
    run = sync_ok(integration)

    assert entity("kept").description == "v2"
    dropped.refresh_from_db()
    assert dropped.description == "v1"
    assert dropped.integration_links == []
    assert run.imported == 0  # an unlinked record is not auto-imported again
    assert ImportedEntity.objects.get(entity=dropped).state == LinkState.UNLINKED


def test_reimport_right_after_unlink_links_the_same_entity_again(world, engine_integration):
    world.add_repo("svc", description="v1")
    integration = engine_integration()
    sync_ok(integration)
    row = discovered(integration, "svc")
    first = discovered_import(discovered=row)
    imported_unlink(imported=first)

    again = discovered_import(discovered=row)

    assert (again.entity_id, again.action) == (first.entity_id, ImportAction.REGISTER)
    assert Entity.objects.filter(name="svc").count() == 1
    assert [item["action"] for item in entity("svc").integration_links] == ["REGISTER"]
    describe(world, "svc", "v2")
    sync_ok(integration)
    assert entity("svc").description == "v2"  # refreshed again


def test_reimport_after_unlink_in_a_register_only_integration(world, engine_integration):
    world.add_repo("svc", description="v1")
    integration = engine_integration(registration="register", auto_import=True)
    sync_ok(integration)
    imported_unlink(imported=ImportedEntity.objects.get(discovered__name="svc"))
    sync_ok(integration)  # the record now matches its former entity by name

    again = discovered_import(discovered=discovered(integration, "svc"))

    assert again.action == ImportAction.REGISTER
    assert again.entity_id == entity("svc").pk
    assert entity("svc").integration_links[0]["action"] == "REGISTER"


def test_reimport_after_unlink_as_a_merge_into_the_same_entity(world, engine_integration):
    world.add_repo("svc")
    integration = engine_integration(auto_import=True)
    sync_ok(integration)
    imported_unlink(imported=ImportedEntity.objects.get(discovered__name="svc"))
    again = discovered_import(
        discovered=discovered(integration, "svc"), action="merge", entity=entity("svc")
    )
    assert again.action == ImportAction.MERGE
    assert entity("svc").integration_links[0]["action"] == "MERGE"


# -- suspend -------------------------------------------------------------------------------------


def test_suspended_integration_skips_sync_and_resumes_when_enabled(world, engine_integration):
    world.add_repo("svc", description="v1")
    integration = engine_integration(auto_import=True)
    sync_ok(integration)
    services.integration_suspend(integration=integration)
    describe(world, "svc", "v2")
    world.add_repo("newcomer")
    before = entity("svc")

    run = sync(integration)

    assert run.state == SyncState.SKIPPED
    assert "suspended" in run.message
    assert not DiscoveredEntity.objects.filter(name="newcomer").exists()
    after = entity("svc")
    assert (after.description, after.etag, after.updated_at) == (
        "v1",
        before.etag,
        before.updated_at,
    )

    services.integration_resume(integration=integration)
    assert Integration.objects.get(pk=integration.pk).state == IntegrationState.ENABLED
    resumed = sync_ok(integration)
    assert resumed.discovered == 1
    assert entity("svc").description == "v2"
    assert entity("newcomer").integration_links


# -- delete --------------------------------------------------------------------------------------


def test_delete_integration_keeps_entities_and_removes_its_records(world, make_integration):
    world.add_repo("svc", prs=3, commits=4, description="from the repo")
    integration = make_integration(auto_import=True)
    mirror = services.connector_create(
        name="mirror",
        provider="fake",
        auth_kind="none",
        base_url="https://mirror.example",
        config={"world": world.name},
    )
    # Another instance (a mirror) of the same repository: its own repository, one entity.
    other = services.integration_create(connector=mirror, name="other", auto_import=True)
    sync_ok(integration)
    sync_ok(other)  # other merges into the same entity
    svc = entity("svc")
    assert [item["integration_name"] for item in svc.integration_links] == ["acme", "other"]
    assert PullRequest.objects.count() == 6

    services.integration_delete(integration=integration)

    svc.refresh_from_db()
    assert svc.description == "from the repo"
    assert [item["integration_name"] for item in svc.integration_links] == ["other"]
    assert not DiscoveredEntity.objects.filter(integration_id=integration.pk).exists()
    assert not ImportedEntity.objects.filter(integration_id=integration.pk).exists()
    assert not SyncRun.objects.filter(integration_id=integration.pk).exists()
    assert PullRequest.objects.count() == 3
    assert Commit.objects.count() == 4

    services.integration_delete(integration=other)
    svc.refresh_from_db()
    assert (svc.integration_links, svc.integration_properties) == ([], {})
    assert not PullRequest.objects.exists() and not Commit.objects.exists()
    assert Entity.objects.filter(name="svc").exists()


# -- auto-import ---------------------------------------------------------------------------------


def test_auto_import_takes_only_newly_discovered_records(world, engine_integration):
    world.add_repo("first")
    integration = engine_integration()
    sync_ok(integration)  # discovered while auto-import was off: stays for a user to import
    services.integration_update(integration=integration, auto_import=True)
    world.add_repo("second")

    run = sync_ok(integration)

    assert run.imported == 1
    assert discovered(integration, "first").state == DiscoveredState.DISCOVERED
    assert discovered(integration, "second").state == DiscoveredState.IMPORTED
    assert not Entity.objects.filter(name="first").exists()
    again = sync_ok(integration)
    assert again.imported == 0
    assert ImportedEntity.objects.count() == 1


def test_auto_import_records_a_refusal_on_the_record_naming_the_name_holder(
    world, engine_integration, make_entities
):
    make_entities(component_doc("taken", metadata={"annotations": {"fake.example/slug": "x"}}))
    world.add_repo("taken")  # name collides, rule does not match: register is refused
    world.add_repo("free")
    rule = {"ingested": "uuid", "catalog": 'metadata.annotations."fake.example/slug"'}
    integration = engine_integration(auto_import=True, correlation=[rule])
    run = sync(integration)
    assert run.imported == 1
    assert (run.state, run.errors) == (SyncState.PARTIAL, 1)
    taken = discovered(integration, "taken")
    assert taken.state == DiscoveredState.DISCOVERED
    assert entity("taken").integration_links == []
    error = taken.processing_errors["import"]
    assert error["reason"] == "name taken"
    assert "component:default/taken" in error["message"]
    assert taken.error_since is not None
    assert discovered(integration, "free").processing_errors == {}


def test_bulk_import_reports_each_request_on_its_own(world, engine_integration, make_entities):
    (target,) = make_entities(component_doc("target"))
    for name in ("plain", "typed", "merged", "twice", "bad-merge"):
        world.add_repo(name)
    integration = engine_integration()
    sync_ok(integration)
    ids = {row.name: row.pk for row in DiscoveredEntity.objects.filter(integration=integration)}
    discovered_import(discovered=discovered(integration, "twice"))
    missing_entity = Entity.objects.order_by("-pk").first().pk + 1000

    requests = [
        ImportRequest(ids["plain"]),
        ImportRequest(ids["typed"], action="register", entity_type="website"),
        ImportRequest(ids["merged"], action="merge", entity_id=target.pk),
        ImportRequest(ids["twice"]),
        ImportRequest(ids["bad-merge"], action="merge", entity_id=target.pk, entity_type="x"),
        ImportRequest(ids["bad-merge"], action="merge", entity_id=missing_entity),
        ImportRequest(999_999),
    ]
    results = discovered_import_many(integration=integration, requests=requests)

    outcome = [(imported.action if imported else None, error) for _, imported, error in results]
    assert [action for action, _ in outcome] == ["REGISTER", "REGISTER", "MERGE"] + [None] * 4
    errors = [error for _, error in outcome]
    assert errors[:3] == ["", "", ""]
    assert "already imported" in errors[3]
    assert "type cannot be set" in errors[4]
    assert f"No catalog entity {missing_entity}" in errors[5]
    assert "No discovered entity 999999" in errors[6]
    assert entity("typed").spec_type == "website"
    target.refresh_from_db()
    assert [item["action"] for item in target.integration_links] == ["MERGE"]
    assert discovered(integration, "bad-merge").state == DiscoveredState.DISCOVERED


def test_bulk_import_refuses_records_of_another_integration(world, engine_integration):
    world.add_repo("svc")
    mine, theirs = engine_integration("mine"), engine_integration("theirs")
    sync_ok(theirs)
    (result,) = discovered_import_many(
        integration=mine,
        requests=[ImportRequest(discovered(theirs, "svc").pk)],
    )
    assert result[1] is None and "No discovered entity" in result[2]


def test_import_of_a_gone_record_is_refused(world, engine_integration):
    for name in ("a", "b", "c"):
        world.add_repo(name)
    integration = engine_integration()
    sync_ok(integration, full=True)
    world.repos.pop()
    sync_ok(integration, full=True)
    with pytest.raises(ImportRefused, match="no longer exists"):
        discovered_import(discovered=discovered(integration, "c"))


def test_deleting_an_imported_entity_returns_its_record_to_discovered_on_the_next_sync(
    world, engine_integration
):
    from catalog.services import entity_delete

    world.add_repo("svc")
    integration = engine_integration(auto_import=True)
    sync_ok(integration)
    entity_delete(entity=entity("svc"))
    assert not ImportedEntity.objects.exists()

    sync_ok(integration)

    row = discovered(integration, "svc")
    assert row.state == DiscoveredState.DISCOVERED
    discovered_import(discovered=row)
    assert entity("svc").integration_links
