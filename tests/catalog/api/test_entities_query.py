"""/entities/by-query: cursor pages over filters (GET) and predicates (POST)."""

import base64
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

URL = "/api/catalog/entities/by-query"


def item_names(body) -> list[str]:
    return [item["metadata"]["name"] for item in body["items"]]


def walk(client, first_response, method: str = "get") -> tuple[list[str], list[dict]]:
    """Follow nextCursor to the end; returns names in page order and every response body."""
    bodies = []
    response = first_response
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        bodies.append(body)
        cursor = body["pageInfo"].get("nextCursor")
        if not cursor:
            break
        if method == "get":
            response = client.get(URL, {"cursor": cursor, "limit": 2})
        else:
            response = client.post(URL, {"cursor": cursor, "limit": 2}, format="json")
    return [name for body in bodies for name in item_names(body)], bodies


def test_get_walks_every_page_by_cursor_without_duplicates_or_gaps(reader_client, catalog):
    first = reader_client.get(
        URL, {"filter": "kind=component", "limit": 2, "orderField": "metadata.name,asc"}
    )
    seen, bodies = walk(reader_client, first)
    assert seen == ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    assert len(bodies) == 3
    assert {body["totalItems"] for body in bodies} == {6}
    assert "prevCursor" not in bodies[0]["pageInfo"]
    assert "prevCursor" in bodies[1]["pageInfo"]


def test_prev_cursor_returns_the_previous_page(reader_client, catalog):
    first = reader_client.get(
        URL, {"filter": "kind=component", "limit": 2, "orderField": "metadata.name,desc"}
    ).json()
    second = reader_client.get(URL, {"cursor": first["pageInfo"]["nextCursor"], "limit": 2})
    third = reader_client.get(URL, {"cursor": second.json()["pageInfo"]["nextCursor"], "limit": 2})
    assert item_names(third.json()) == ["bravo", "alpha"]
    back = reader_client.get(URL, {"cursor": third.json()["pageInfo"]["prevCursor"], "limit": 2})
    assert item_names(back.json()) == item_names(second.json()) == ["delta", "charlie"]
    back_again = reader_client.get(URL, {"cursor": back.json()["pageInfo"]["prevCursor"]})
    assert item_names(back_again.json()) == ["foxtrot", "echo"]
    assert "prevCursor" not in back_again.json()["pageInfo"]


def test_cursor_carries_the_query_so_other_parameters_are_ignored(reader_client, catalog):
    first = reader_client.get(URL, {"filter": "spec.type=service", "limit": 2}).json()
    second = reader_client.get(
        URL, {"cursor": first["pageInfo"]["nextCursor"], "filter": "kind=group", "limit": 2}
    ).json()
    assert all(item["spec"]["type"] == "service" for item in second["items"])


def test_full_text_filter_on_given_fields(reader_client, catalog):
    response = reader_client.get(
        URL, {"fullTextFilterTerm": " ALPHA ", "fullTextFilterFields": "metadata.title"}
    )
    assert item_names(response.json()) == ["alpha"]


def test_total_items_can_be_excluded(reader_client, catalog):
    assert reader_client.get(URL, {"totalItems": "exclude"}).json()["totalItems"] == 0


def test_post_predicate_walks_pages_by_cursor(reader_client, catalog):
    predicate = {
        "$all": [
            {"kind": "component"},
            {"$any": [{"metadata.tags": {"$contains": "java"}}, {"spec.type": "library"}]},
            {"$not": {"metadata.name": "bravo"}},
        ]
    }
    first = reader_client.post(
        URL,
        {"query": predicate, "limit": 2, "orderBy": [{"field": "metadata.name", "order": "asc"}]},
        format="json",
    )
    seen, bodies = walk(reader_client, first, method="post")
    assert seen == ["alpha", "delta"]
    assert bodies[0]["totalItems"] == 2


def test_predicate_cursors_are_base64_json_with_a_query_key(reader_client, catalog):
    """@backstage/catalog-client routes a cursor to POST when atob() finds a "query" key."""
    body = reader_client.post(URL, {"query": {"kind": "component"}, "limit": 1}, format="json")
    cursor = body.json()["pageInfo"]["nextCursor"]
    assert json.loads(base64.b64decode(cursor))["query"] == {"kind": "component"}
    get_cursor = reader_client.get(URL, {"filter": "kind=component", "limit": 1}).json()
    assert "query" not in json.loads(base64.b64decode(get_cursor["pageInfo"]["nextCursor"]))


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ({"spec.type": {"$in": ["website", "library"]}}, ["bravo", "delta"]),
        ({"spec.system": {"$exists": True}}, ["echo"]),
        (
            {"kind": "component", "spec.system": {"$exists": False}, "metadata.namespace": "ops"},
            ["foxtrot"],
        ),
        ({"metadata.name": {"$hasPrefix": "CH"}}, ["charlie"]),
        ({"metadata.tags": "python"}, ["charlie", "delta"]),
        (
            {"relations": {"$contains": {"type": "ownedBy", "targetRef": "group:default/team-b"}}},
            ["bravo", "delta"],
        ),
        (
            {
                "relations": {
                    "$contains": {"type": "ownedBy", "targetRef": {"$in": ["group:ops/sre"]}}
                }
            },
            ["foxtrot"],
        ),
        ({"$any": []}, []),
    ],
)
def test_predicate_operators(reader_client, catalog, predicate, expected):
    response = reader_client.post(URL, {"query": predicate, "limit": 50}, format="json")
    assert response.status_code == 200, response.content
    assert sorted(item_names(response.json())) == expected


@pytest.mark.parametrize(
    "predicate",
    [
        {"$all": [{"kind": "component"}], "kind": "group"},
        {"spec.type": {"$in": "website"}},
        {"spec.type": {"$exists": "yes"}},
        {"metadata.links": {"$contains": {"url": "x"}}},
        {"spec.type": ["a", "b"]},
        {"kind": "group", "$unknown": 1},
        {"kind": {"$bogus": 1}},
    ],
)
def test_malformed_predicates_are_input_errors(reader_client, catalog, predicate):
    response = reader_client.post(URL, {"query": predicate}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["name"] == "InputError"


def test_query_runs_a_constant_number_of_queries(
    reader_client, catalog, django_assert_max_num_queries
):
    # token lookup, last-used update, scope memberships, count, page, relations
    with django_assert_max_num_queries(6):
        small = reader_client.get(URL, {"limit": 1, "filter": "kind=component"})
    with django_assert_max_num_queries(6):
        large = reader_client.get(URL, {"limit": 100, "filter": "kind=component"})
    assert len(small.json()["items"]) == 1
    assert len(large.json()["items"]) == 6


def test_default_order_pages_go_forward_and_back_from_a_bound_on_the_leading_key(
    reader_client, catalog
):
    first = reader_client.get(URL, {"filter": "kind=component", "limit": 2})
    seen, bodies = walk(reader_client, first)
    assert seen == ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    back = reader_client.get(URL, {"cursor": bodies[2]["pageInfo"]["prevCursor"], "limit": 2})
    assert item_names(back.json()) == ["charlie", "delta"]

    # The keyset disjunction alone makes the database scan every earlier row to reach a page;
    # the implied bound on the leading sort key is where an index scan starts.
    with CaptureQueriesContext(connection) as captured:
        reader_client.get(URL, {"cursor": bodies[1]["pageInfo"]["nextCursor"], "limit": 2})
    page_sql = next(
        q["sql"] for q in captured.captured_queries if 'FROM "catalog_entity"' in q["sql"]
    )
    assert '"catalog_entity"."ref_key" >= ' in page_sql


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_name_order_ignores_case_and_walks_both_ways(reader_client, direction):
    from catalog.services import entities_upsert
    from tests.catalog.conftest import entity_document

    names = ["alpha", "Bravo", "charlie", "DELTA", "echo"]
    entities_upsert(documents=[entity_document("Component", name) for name in names])
    expected = names if direction == "asc" else names[::-1]
    first = reader_client.get(
        URL, {"limit": 2, "orderField": f"metadata.name,{direction}", "filter": "kind=component"}
    )
    seen, bodies = walk(reader_client, first)
    assert seen == expected
    back = reader_client.get(URL, {"cursor": bodies[2]["pageInfo"]["prevCursor"], "limit": 2})
    assert item_names(back.json()) == expected[2:4]
