"""``ownedByCurrentUser`` on /entities and /entities/by-query (the signed-in user's User entity
and its groups), and ``totalItems=exclude``."""

import pytest

from catalog.services import entities_upsert
from tests.catalog.api.conftest import component

QUERY = "/api/catalog/entities/by-query"


def names(items) -> list[str]:
    return sorted(item["metadata"]["name"] for item in items)


@pytest.fixture
def reader_entity(catalog):
    """The reader's User entity, a member of team-b, and a component the reader owns."""
    user = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "User",
        "metadata": {"name": "reader"},
        "spec": {"memberOf": ["team-b"]},
    }
    entities_upsert(documents=[user, component("golf", owner="user:reader")])


def test_the_user_and_their_groups_own_what_ownedbycurrentuser_lists(reader_client, reader_entity):
    # team-b owns bravo and delta; the reader owns golf.
    expected = ["bravo", "delta", "golf"]
    listed = reader_client.get("/api/catalog/entities", {"ownedByCurrentUser": "true"})
    assert names(listed.json()) == expected
    queried = reader_client.get(QUERY, {"ownedByCurrentUser": "true", "filter": "kind=component"})
    assert (names(queried.json()["items"]), queried.json()["totalItems"]) == (expected, 3)
    posted = reader_client.post(
        QUERY, {"ownedByCurrentUser": True, "query": {"spec.type": "website"}}, format="json"
    )
    assert names(posted.json()["items"]) == ["bravo"]


def test_ownedbycurrentuser_pages_keep_the_condition(reader_client, reader_entity):
    first = reader_client.get(QUERY, {"ownedByCurrentUser": "true", "limit": 2}).json()
    assert first["totalItems"] == 3 and len(first["items"]) == 2
    second = reader_client.get(QUERY, {"cursor": first["pageInfo"]["nextCursor"]}).json()
    assert names(first["items"] + second["items"]) == ["bravo", "delta", "golf"]
    assert "nextCursor" not in second["pageInfo"]


def test_without_a_user_entity_only_what_names_the_user_is_theirs(reader_client, catalog):
    entities_upsert(documents=[component("golf", owner="user:default/reader")])
    listed = reader_client.get("/api/catalog/entities", {"ownedByCurrentUser": "true"})
    assert names(listed.json()) == ["golf"]


def test_a_bad_ownedbycurrentuser_value_is_a_400(reader_client, catalog):
    response = reader_client.get("/api/catalog/entities", {"ownedByCurrentUser": "yes"})
    assert response.status_code == 400
    assert "ownedByCurrentUser must be true or false" in response.json()["error"]["message"]


def test_totalitems_exclude_counts_nothing(reader_client, catalog, django_assert_num_queries):
    # The token, its last use, the scopes, the page and its relations: no count.
    with django_assert_num_queries(5):
        body = reader_client.get(
            QUERY, {"filter": "kind=component", "totalItems": "exclude", "limit": 10}
        ).json()
    assert (len(body["items"]), body["totalItems"]) == (6, 0)
    posted = reader_client.post(
        QUERY, {"query": {"kind": "component"}, "totalItems": "exclude"}, format="json"
    ).json()
    assert (len(posted["items"]), posted["totalItems"]) == (6, 0)
