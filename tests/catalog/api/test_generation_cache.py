"""Exact counts and facet counts are cached per catalog generation: reused while the catalog is
unchanged, recomputed after any write, never shared between readers who see different entities,
and never taken from inside a transaction (PostgreSQL only: elsewhere nothing is cached)."""

import pytest
from django.core.cache import caches
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalog.models import Entity, Scope, ScopeMembership
from catalog.selectors import catalog_generation
from catalog.services import entities_upsert, entity_delete
from tests.catalog.conftest import entity_document

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the generation is a PostgreSQL sequence"
    ),
]

QUERY = "/api/catalog/entities/by-query?filter=kind=component&limit=1"
FACETS = "/api/catalog/entity-facets?facet=spec.type"


@pytest.fixture(autouse=True)
def empty_catalog_cache():
    caches["catalog"].clear()
    yield
    caches["catalog"].clear()


def _components(*names: str, type_: str = "service") -> None:
    entities_upsert(
        documents=[entity_document("Component", name, spec={"type": type_}) for name in names]
    )


def _counting(client, path: str) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    return response.json(), [q["sql"] for q in captured.captured_queries]


def test_every_catalog_table_write_advances_the_generation():
    before = catalog_generation()
    _components("a")
    after_upsert = catalog_generation()
    scope = Scope.objects.create(name="Acme", slug="acme", kind=Scope.Kind.ACCOUNT)
    after_scope = catalog_generation()
    Entity.objects.filter(name="a").update(scope=scope)
    after_update = catalog_generation()
    entity_delete(entity=Entity.objects.get(name="a"))
    after_delete = catalog_generation()
    assert before < after_upsert < after_scope < after_update < after_delete


def test_total_items_is_counted_once_then_served_until_the_catalog_changes(reader_client):
    _components("a", "b")
    first, first_sql = _counting(reader_client, QUERY)
    again, again_sql = _counting(reader_client, QUERY)
    assert first["totalItems"] == again["totalItems"] == 2
    assert any("COUNT(" in sql for sql in first_sql)
    assert not any("COUNT(" in sql for sql in again_sql)

    _components("c")
    changed, changed_sql = _counting(reader_client, QUERY)
    assert changed["totalItems"] == 3
    assert any("COUNT(" in sql for sql in changed_sql)

    entity_delete(entity=Entity.objects.get(name="a"))
    assert _counting(reader_client, QUERY)[0]["totalItems"] == 2


def test_facets_are_recomputed_after_a_write(reader_client):
    _components("a", "b")
    _components("site", type_="website")
    first, _ = _counting(reader_client, FACETS)
    cached, cached_sql = _counting(reader_client, FACETS)
    assert first == cached
    assert {item["value"]: item["count"] for item in first["facets"]["spec.type"]} == {
        "service": 2,
        "website": 1,
    }
    assert not any("catalog_entitysearch" in sql for sql in cached_sql)

    _components("b", type_="website")  # b changes type
    facets = _counting(reader_client, FACETS)[0]["facets"]["spec.type"]
    assert {item["value"]: item["count"] for item in facets} == {"service": 1, "website": 2}


def test_readers_who_see_different_entities_never_share_an_answer(
    make_user, bearer_client, reader_client
):
    acme = Scope.objects.create(name="Acme", slug="acme", kind=Scope.Kind.ACCOUNT)
    _components("public", "private")
    Entity.objects.filter(name="private").update(scope=acme)
    member = make_user("member")
    ScopeMembership.objects.create(user=member, scope=acme)
    member_client = bearer_client(member)

    assert _counting(reader_client, QUERY)[0]["totalItems"] == 1
    assert _counting(member_client, QUERY)[0]["totalItems"] == 2
    assert _counting(reader_client, QUERY)[0]["totalItems"] == 1

    # Leaving the scope is a catalog write too: the member's next count is fresh.
    ScopeMembership.objects.filter(user=member).delete()
    assert _counting(member_client, QUERY)[0]["totalItems"] == 1


def test_nothing_is_cached_inside_a_transaction(reader_client):
    _components("a")
    with transaction.atomic():
        assert catalog_generation() is None
        _components("b")
        assert _counting(reader_client, QUERY)[0]["totalItems"] == 2
        transaction.set_rollback(True)
    # The rolled-back entity was counted inside the transaction but never cached.
    assert _counting(reader_client, QUERY)[0]["totalItems"] == 1
