"""The bulk writes: each gives what the ORM's own writes give, on PostgreSQL (COPY, one JSON
parameter, statements built once) and elsewhere (the ORM's bulk writes) alike."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from catalog.models import Entity, Relation
from integrations.models import (
    Connector,
    DiscoveredEntity,
    Integration,
    PullRequest,
    WebhookDelivery,
)
from portal.bulk import (
    instance_get,
    instance_insert_new,
    instances_insert,
    rows_insert,
    rows_update,
    rows_upsert,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
# JSON that quoting gets wrong: quotes, backslashes, tabs and newlines, non-ASCII, nulls, nesting.
AWKWARD = {"quote": 'a "b" \\ c', "text": "line\nnext\ttab ünïcode", "nested": [{"x": None}, 1]}


def _entity(name: str, **values) -> Entity:
    return Entity(
        kind="Component", name=name, ref_key=f"component:default/{name}", etag="e", **values
    )


@pytest.fixture
def integration() -> Integration:
    connector = Connector.objects.create(name="bulk", provider="fake", auth_kind="none")
    return Integration.objects.create(name="bulk", provider="fake", connector=connector)


@pytest.fixture
def repository(integration) -> DiscoveredEntity:
    return DiscoveredEntity.objects.create(
        integration=integration, external_id="r1", name="payments", last_seen_at=T0
    )


def test_rows_insert_writes_plain_values_by_column():
    entity = _entity("cart")
    entity.save()
    columns = ("originating_entity_id", "source_key", "type", "target_ref", "target_key")
    rows = [
        (entity.pk, entity.ref_key, "ownedBy", "group:default/team-a", "group:default/team-a"),
        (entity.pk, entity.ref_key, "partOf", 'system:default/"odd"', 'system:default/"odd"'),
    ]
    rows_insert(Relation, columns, rows)
    rows_insert(Relation, columns, [])
    stored = Relation.objects.filter(originating_entity=entity).order_by("type")
    assert [(r.type, r.target_ref) for r in stored] == [
        ("ownedBy", "group:default/team-a"),
        ("partOf", 'system:default/"odd"'),
    ]


def test_instances_insert_sets_ids_defaults_and_json_as_bulk_create_does():
    entities = [_entity("one", spec=AWKWARD), _entity("two")]
    instances_insert(entities)
    instances_insert([])
    assert [entity.pk for entity in entities] == sorted({entity.pk for entity in entities})
    assert not any(entity._state.adding for entity in entities)
    one, two = (Entity.objects.get(pk=entity.pk) for entity in entities)
    assert one.spec == AWKWARD
    assert (two.spec, two.tags, two.namespace, two.uid) == ({}, [], "default", entities[1].uid)
    assert two.created_at == entities[1].created_at is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        instances_insert([_entity("one")])


def _pull_request(repository, external_id: str, **values) -> dict:
    return {
        "discovered_id": repository.pk,
        "external_id": external_id,
        "title": "Fix",
        "state": "OPEN",
        "author": "ann",
        "source_branch": "fix",
        "destination_branch": "main",
        "url": "",
        "created_on": None,
        "updated_on": T0,
        "data": {},
        **values,
    }


def test_rows_upsert_creates_then_updates_only_the_named_columns_by_the_unique_ones(repository):
    update = ["title", "state", "updated_on", "data"]
    unique = ["discovered_id", "external_id"]
    first = [_pull_request(repository, "1", data=AWKWARD), _pull_request(repository, "2")]
    rows_upsert(PullRequest, first, unique=unique, update=update)
    rows_upsert(PullRequest, [], unique=unique, update=update)
    created = PullRequest.objects.get(discovered=repository, external_id="1")
    assert (created.title, created.data, created.updated_on, created.created_on) == (
        "Fix",
        AWKWARD,
        T0,
        None,
    )

    later = T0 + timedelta(hours=1)
    changed = _pull_request(
        repository, "1", title="Fixed", state="MERGED", author="bob", updated_on=later, data=[1]
    )
    rows_upsert(PullRequest, [changed], unique=unique, update=update)
    assert PullRequest.objects.filter(discovered=repository).count() == 2
    updated = PullRequest.objects.get(pk=created.pk)  # the same row
    assert (updated.title, updated.state, updated.updated_on, updated.data) == (
        "Fixed",
        "MERGED",
        later,
        [1],
    )
    assert updated.author == "ann"  # not among the columns to update


def test_rows_update_sets_fields_by_primary_key_and_leaves_other_rows(repository, integration):
    other = DiscoveredEntity.objects.create(
        integration=integration, external_id="r2", name="search", last_seen_at=T0
    )
    state = {"pull_requests": {"initialized": True, "gaps": [["a", "b"]], "newest": None}}
    rows_update(DiscoveredEntity, {repository.pk: {"secondary_state": state, "name": "renamed"}})
    rows_update(DiscoveredEntity, {})
    repository.refresh_from_db()
    other.refresh_from_db()
    assert (repository.secondary_state, repository.name) == (state, "renamed")
    assert (other.secondary_state, other.name) == ({}, "search")


def test_rows_update_writes_document_json_keeping_key_order():
    entity = _entity("ordered")
    entity.save()
    spec = {"zeta": 1, "alpha": AWKWARD}
    rows_update(Entity, {entity.pk: {"spec": spec}})
    assert list(Entity.objects.get(pk=entity.pk).spec) == ["zeta", "alpha"]
    assert Entity.objects.get(pk=entity.pk).spec == spec


def test_instance_get_loads_only_the_named_fields_of_the_matching_row(integration):
    fields = ("id", "provider", "state")
    found = instance_get(Integration, fields, id=integration.pk, provider="fake")
    assert (found.pk, found.provider, found.state) == (integration.pk, "fake", integration.state)
    assert found.get_deferred_fields() >= {"name", "connector_id"}
    assert not found._state.adding
    assert instance_get(Integration, fields, id=integration.pk, provider="other") is None
    assert instance_get(Integration, fields, id=integration.pk + 1, provider="fake") is None


def test_instance_insert_new_inserts_once_with_defaults_then_skips_a_taken_unique_value(
    integration,
):
    def delivery(event: str) -> WebhookDelivery:
        return WebhookDelivery(integration_id=integration.pk, delivery_id="d-1", event=event)

    first = delivery("repo:push")
    assert instance_insert_new(first, unique=("integration", "delivery_id"))
    stored = WebhookDelivery.objects.get(pk=first.pk)
    assert (stored.event, stored.outcome, stored.processed_at) == ("repo:push", "queued", None)
    assert stored.received_at == first.received_at is not None

    with transaction.atomic():  # a conflict does not break the enclosing transaction
        again = delivery("pullrequest:created")
        assert not instance_insert_new(again, unique=("integration", "delivery_id"))
        assert again.pk is None
        assert WebhookDelivery.objects.filter(integration=integration).count() == 1
    assert WebhookDelivery.objects.get().event == "repo:push"


@pytest.mark.django_db(transaction=True)
def test_instance_insert_new_refuses_a_missing_foreign_row_with_an_integrity_error(integration):
    # Autocommitted, as the webhook intake writes it (foreign keys are checked at commit).
    orphan = WebhookDelivery(integration_id=integration.pk + 1000, delivery_id="d", event="e")
    with pytest.raises(IntegrityError):
        instance_insert_new(orphan, unique=("integration", "delivery_id"))
    assert not WebhookDelivery.objects.exists()
