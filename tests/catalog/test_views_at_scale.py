"""The catalog list over 100,000 entities: the same number of queries as over ten."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Entity, EntitySearch
from catalog.refs import ref_key

SIZE = 100_000


def _bulk_catalog(count: int) -> None:
    """Rows written directly (the write path is tested elsewhere; this is about reads): the
    columns the list shows and the search rows its kind and tag filters use."""
    entities = [
        Entity(
            uid=uuid.uuid4(),
            kind="Component" if index % 4 else "API",
            namespace="default",
            name=f"service-{index:06d}",
            ref_key=ref_key("Component" if index % 4 else "API", "default", f"service-{index:06d}"),
            spec_type="service",
            owner=f"team-{index % 50}",
            lifecycle="production",
            tags=["java"] if index % 2 else [],
            spec={"type": "service", "owner": f"team-{index % 50}", "lifecycle": "production"},
            etag="x",
        )
        for index in range(count)
    ]
    Entity.objects.bulk_create(entities, batch_size=5000)
    ids = Entity.objects.values_list("pk", "kind", "tags")
    rows = []
    for pk, kind, tags in ids.iterator(chunk_size=10000):
        rows.append(EntitySearch(entity_id=pk, key="kind", value=kind.lower(), original_value=kind))
        for tag in tags:
            rows.append(
                EntitySearch(entity_id=pk, key="metadata.tags", value=tag, original_value=tag)
            )
    EntitySearch.objects.bulk_create(rows, batch_size=10000)
    if connection.vendor == "postgresql":
        # A live database is analysed by autovacuum; a freshly bulk-loaded test one is not, and
        # without statistics the planner picks nested loops over 100,000 rows.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE catalog_entity")
            cursor.execute("ANALYZE catalog_entitysearch")


@pytest.mark.django_db
def test_the_catalog_list_over_100000_entities_runs_a_constant_number_of_queries(client):
    client.force_login(get_user_model().objects.create_user("ada", password="pw-unused-123"))

    def queries(params) -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/catalog/", params)
        assert response.status_code == 200
        return len(captured), len(response.context["entities"])

    _bulk_catalog(10)
    small = queries({"kind": "Component", "tag": "java", "sort": "owner"})
    Entity.objects.all().delete()
    _bulk_catalog(SIZE)
    assert Entity.objects.count() == SIZE
    large = queries({"kind": "Component", "tag": "java", "sort": "owner"})
    unfiltered = queries({})
    assert small[0] == large[0]
    assert large[1] > 0 and unfiltered[1] > 0
    assert unfiltered[0] <= large[0]
