"""List endpoints cost a fixed number of queries whatever the page size."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations import services
from integrations.engine.sync import integration_sync
from tests.integrations.api.conftest import API
from tests.integrations.conftest import component_doc

# Token lookup, scope memberships, count, page, and a prefetch or two.
MAX_QUERIES = 8


def _queries(client, url, limit):
    with CaptureQueriesContext(connection) as context:
        response = client.get(url, {"limit": limit})
    assert response.status_code == 200
    return len(context), len(response.json()["results"])


def _assert_constant(client, url, django_assert_max_num_queries, small=1, large=25):
    client.get(url)  # the token's first use of the minute writes last_used_at
    few, few_items = _queries(client, url, small)
    many, many_items = _queries(client, url, large)
    assert (few_items, many_items) == (small, large)
    assert few == many
    with django_assert_max_num_queries(MAX_QUERIES):
        client.get(url, {"limit": large})


@pytest.fixture
def busy(world, make_integration, make_entities, make_scope, connector):
    """25 integrations and connectors; the first integration has 25 repositories, all matched
    and auto-imported, and 25 runs."""
    scope = make_scope("acme/payments")
    for index in range(25):
        world.add_repo(f"repo-{index:02d}")
    make_entities(*[component_doc(f"repo-{index:02d}") for index in range(25)])
    first = make_integration("first", auto_import=True, secondary_kinds=[], scope=scope)
    for index in range(24):
        make_integration(f"other-{index:02d}", field_mappings={"metadata.title": "name"})
        services.connector_create(
            name=f"c-{index:02d}", provider="fake", auth_kind="none", scope=scope
        )
    for _ in range(25):
        integration_sync(integration_id=first.pk, trigger="manual")
    return first


@pytest.fixture
def member_client(make_user, bearer_client, make_scope, member_of):
    """A reader who belongs to two scopes, so visibility filters run too."""
    user = make_user("member")
    member_of(user, make_scope("acme"))
    member_of(user, make_scope("globex"))
    return bearer_client(user)


@pytest.mark.parametrize(
    "path", ["/", "/connectors", "/{pk}/discovered", "/{pk}/imported", "/{pk}/runs"]
)
def test_list_queries_do_not_grow_with_the_page(
    busy, member_client, django_assert_max_num_queries, path
):
    url = API + path.format(pk=busy.pk)
    _assert_constant(member_client, url, django_assert_max_num_queries)


def test_imported_entities_are_all_there(busy, member_client):
    body = member_client.get(f"{API}/{busy.pk}/imported").json()
    assert body["count"] == 25
    assert {item["status"] for item in body["results"]} == {"Merged"}
