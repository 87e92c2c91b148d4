"""GET /api/catalog/entities: filters, projection, ordering, paging, query counts."""

import re

import pytest

URL = "/api/catalog/entities"


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["metadata"]["name"] for item in response.json()]


def test_returns_a_bare_array_ordered_by_entity_ref(reader_client, catalog):
    response = reader_client.get(URL)
    body = response.json()
    assert isinstance(body, list)
    refs = [
        f"{e['kind']}:{e['metadata']['namespace']}/{e['metadata']['name']}".lower() for e in body
    ]
    assert refs == sorted(refs)
    assert len(body) == len(catalog)


def test_statements_in_one_filter_are_anded(reader_client, catalog):
    response = reader_client.get(URL, {"filter": "kind=component,spec.type=service"})
    assert sorted(names(response)) == ["alpha", "charlie", "echo", "foxtrot"]


def test_repeated_filters_are_ored(reader_client, catalog):
    response = reader_client.get(URL, {"filter": ["spec.type=website", "spec.type=library"]})
    assert sorted(names(response)) == ["bravo", "delta"]


def test_a_repeated_key_in_one_filter_matches_any_of_its_values(reader_client, catalog):
    response = reader_client.get(URL, {"filter": "spec.type=website,spec.type=library"})
    assert sorted(names(response)) == ["bravo", "delta"]


def test_a_key_without_value_means_exists(reader_client, catalog):
    assert names(reader_client.get(URL, {"filter": "spec.system"})) == ["echo"]


def test_tags_match_by_item_and_by_item_key(reader_client, catalog):
    assert sorted(names(reader_client.get(URL, {"filter": "metadata.tags=java"}))) == [
        "alpha",
        "bravo",
    ]
    both = reader_client.get(URL, {"filter": "metadata.tags.python=true,metadata.tags.django"})
    assert names(both) == ["delta"]


def test_filter_keys_and_values_are_case_insensitive(reader_client, catalog):
    response = reader_client.get(URL, {"filter": "KIND=Component,Spec.Type=WEBSITE"})
    assert names(response) == ["bravo"]


def test_relation_filters_use_target_refs(reader_client, catalog):
    response = reader_client.get(URL, {"filter": "relations.ownedBy=group:default/team-b"})
    assert sorted(names(response)) == ["bravo", "delta"]
    inverse = reader_client.get(URL, {"filter": "relations.ownerof=component:default/alpha"})
    assert names(inverse) == ["team-a"]


def test_namespace_filter(reader_client, catalog):
    assert names(reader_client.get(URL, {"filter": "metadata.namespace=ops"})) == ["foxtrot"]


def test_fields_projects_the_requested_paths_only(reader_client, catalog):
    response = reader_client.get(
        URL, {"filter": "metadata.name=alpha", "fields": "kind,metadata.name,spec.type"}
    )
    assert response.json() == [
        {"kind": "Component", "metadata": {"name": "alpha"}, "spec": {"type": "service"}}
    ]


def test_order_descending_by_name(reader_client, catalog):
    response = reader_client.get(URL, {"filter": "kind=component", "order": "desc:metadata.name"})
    assert names(response) == ["foxtrot", "echo", "delta", "charlie", "bravo", "alpha"]


def test_entities_missing_the_order_field_sort_last(reader_client, catalog):
    response = reader_client.get(URL, {"order": "asc:spec.system"})
    assert names(response)[0] == "echo"


def test_limit_and_offset(reader_client, catalog):
    response = reader_client.get(
        URL, {"filter": "kind=component", "order": "asc:metadata.name", "limit": 2, "offset": 1}
    )
    assert names(response) == ["bravo", "charlie"]


def test_link_header_walks_every_page_without_duplicates_or_gaps(reader_client, catalog):
    seen = []
    response = reader_client.get(URL, {"limit": 3, "fields": "metadata.name"})
    while True:
        seen.extend(names(response))
        link = response.headers.get("Link")
        if not link:
            break
        next_url = re.match(r'<([^>]+)>; rel="next"', link).group(1)
        response = reader_client.get(next_url)
    assert seen == names(reader_client.get(URL))


def test_malformed_order_is_an_input_error(reader_client, catalog):
    response = reader_client.get(URL, {"order": "sideways:metadata.name"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["name"] == "InputError"
    assert body["response"] == {"statusCode": 400}
    assert body["request"]["method"] == "GET"


def test_malformed_cursor_is_an_input_error(reader_client, catalog):
    assert reader_client.get(URL, {"after": "not-a-cursor"}).status_code == 400


@pytest.mark.parametrize("limit", [1, 5, 50])
def test_list_runs_a_constant_number_of_queries(
    reader_client, catalog, django_assert_max_num_queries, limit
):
    # Token lookup, last-used update, scope memberships, entities, relations.
    with django_assert_max_num_queries(5):
        response = reader_client.get(URL, {"limit": limit})
    assert response.status_code == 200
