"""The catalog UI: list (filters, search, sort, keyset pages, constant queries), entity tabs."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Entity, Scope, ScopeMembership
from catalog.services import entities_ingested_write, entities_upsert
from tests.catalog.conftest import entity_document

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_client(client):
    user = get_user_model().objects.create_user("ada", password="pw-unused-123")
    client.force_login(user)
    client.user = user
    return client


def component(name: str, **spec) -> dict:
    metadata = spec.pop("metadata", {})
    return entity_document("Component", name, spec=spec, **metadata)


def names(response) -> list[str]:
    return [e.name for e in response.context["entities"]]


def test_the_list_needs_a_signed_in_user(client):
    response = client.get("/catalog/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_list_shows_entities_with_their_columns(user_client):
    entities_upsert(
        documents=[
            component("checkout", type="service", owner="team-pay", metadata={"tags": ["java"]}),
            entity_document("System", "shop"),
        ]
    )
    response = user_client.get("/catalog/")
    body = response.content.decode()
    assert response.status_code == 200
    assert names(response) == ["checkout", "shop"]
    assert 'href="/catalog/default/component/checkout/"' in body
    assert "team-pay" in body and "java" in body
    assert "2 entities" in body


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "System"}, ["shop"]),
        ({"type": "library"}, ["lib-b"]),
        ({"owner": "team-b"}, ["lib-b"]),
        ({"lifecycle": "experimental"}, ["svc-a"]),
        ({"tag": "python"}, ["svc-a"]),
        ({"integration": "acme"}, ["svc-a"]),
        ({"q": "lib"}, ["lib-b"]),
        ({"kind": "Component", "owner": "team-a"}, ["svc-a"]),
    ],
)
def test_filters_narrow_the_list(user_client, params, expected):
    svc, *_ = entities_upsert(
        documents=[
            component(
                "svc-a", lifecycle="experimental", metadata={"tags": ["python"], "title": "A"}
            ),
            component("lib-b", type="library", owner="team-b"),
            entity_document("System", "shop"),
        ]
    ).entities
    entities_ingested_write(
        ingested={svc.pk: ([{"integration_id": 1, "integration_name": "acme"}], {})}
    )
    assert names(user_client.get("/catalog/", params)) == expected


def test_filter_options_come_from_the_catalog(user_client):
    entities_upsert(documents=[component("a", type="website"), component("b", type="library")])
    filters = {f["param"]: f for f in user_client.get("/catalog/").context["filters"]}
    assert filters["type"]["options"] == ["library", "website"]
    assert filters["kind"]["options"] == ["Component"]


def test_sorting_by_a_column_and_reversing_it(user_client):
    entities_upsert(
        documents=[
            component("a", owner="team-c"),
            component("b", owner="team-a"),
            component("c", owner="team-b"),
        ]
    )
    assert names(user_client.get("/catalog/", {"sort": "owner"})) == ["b", "c", "a"]
    assert names(user_client.get("/catalog/", {"sort": "-owner"})) == ["a", "c", "b"]
    assert names(user_client.get("/catalog/", {"sort": "-name"})) == ["c", "b", "a"]


def test_keyset_pages_go_forward_and_back(user_client):
    entities_upsert(documents=[component(f"svc-{i:02d}") for i in range(60)])
    first = user_client.get("/catalog/", {"kind": "Component"})
    assert names(first) == [f"svc-{i:02d}" for i in range(25)]
    assert not first.context["prev_url"]
    second = user_client.get("/catalog/" + first.context["next_url"])
    assert names(second) == [f"svc-{i:02d}" for i in range(25, 50)]
    third = user_client.get("/catalog/" + second.context["next_url"])
    assert names(third) == [f"svc-{i:02d}" for i in range(50, 60)]
    assert not third.context["next_url"]
    back = user_client.get("/catalog/" + third.context["prev_url"])
    assert names(back) == [f"svc-{i:02d}" for i in range(25, 50)]
    assert "kind=Component" in third.context["prev_url"]  # filters stay on every page


def test_a_malformed_page_token_is_an_error_message_not_a_crash(user_client):
    response = user_client.get("/catalog/", {"after": "not-base64!"})
    assert response.status_code == 200
    assert "Malformed page token" in response.content.decode()


def test_the_list_costs_the_same_queries_whatever_the_catalog_size(user_client):
    """10 or 50 entities (and so 100,000): session and user (2), the user's scopes for visibility
    and for the header (2), one count, one page, one query per filter's options (6), and the
    choices other apps register (the scorecards, 1). Filters, search and sort are the same
    indexed search-table lookups as the API's ``filter=``."""

    def queries(params) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert user_client.get("/catalog/", params).status_code == 200
        return len(captured)

    entities_upsert(documents=[component(f"a-{i}", metadata={"tags": ["x"]}) for i in range(10)])
    small = queries({"kind": "Component", "tag": "x", "sort": "owner"})
    entities_upsert(documents=[component(f"b-{i}", metadata={"tags": ["x"]}) for i in range(40)])
    large = queries({"kind": "Component", "tag": "x", "sort": "owner"})
    paged = queries(
        {"kind": "Component", "tag": "x", "sort": "owner", "after": _token(user_client)}
    )
    assert small == large == paged == 13


def _token(client) -> str:
    next_url = client.get("/catalog/", {"kind": "Component", "tag": "x", "sort": "owner"}).context[
        "next_url"
    ]
    return re.search(r"after=([^&]+)", next_url).group(1).replace("%3D", "=")


def test_entities_of_other_scopes_are_invisible(user_client):
    scope = Scope.objects.create(name="Acme", slug="acme", kind="account")
    other = Scope.objects.create(name="Other", slug="other", kind="account")
    ScopeMembership.objects.create(user=user_client.user, scope=scope)
    entities_upsert(documents=[component("mine")], scope=scope)
    entities_upsert(documents=[component("theirs")], scope=other)
    assert names(user_client.get("/catalog/")) == ["mine"]
    assert user_client.get("/catalog/default/component/theirs/").status_code == 404


def test_the_overview_shows_the_entity(user_client):
    entities_upsert(
        documents=[
            component(
                "checkout",
                owner="team-pay",
                system="shop",
                metadata={
                    "title": "Checkout",
                    "description": "Takes orders",
                    "tags": ["java"],
                    "links": [{"url": "https://runbook.example", "title": "Runbook"}],
                    "annotations": {"bitbucket.org/repo-url": "https://bitbucket.org/acme/co"},
                },
            )
        ]
    )
    body = user_client.get("/catalog/default/component/checkout/").content.decode()
    for text in ("Checkout", "Takes orders", "java", "Runbook", "production"):
        assert text in body
    assert 'href="/catalog/default/group/team-pay/"' in body
    assert 'href="/catalog/default/system/shop/"' in body
    assert 'href="https://bitbucket.org/acme/co"' in body
    for tab in ("Overview", "Relationships", "Pull requests", "Commits", "YAML"):
        assert f">{tab}</a>" in body


def test_relationships_are_grouped_by_type_and_linked(user_client):
    entities_upsert(
        documents=[
            component("checkout", owner="team-pay", dependsOn=["component:payments"]),
            component("payments"),
        ]
    )
    response = user_client.get("/catalog/default/component/checkout/relationships")
    groups = dict(response.context["groups"])
    assert set(groups) == {"dependsOn", "ownedBy"}
    body = response.content.decode()
    assert 'href="/catalog/default/component/payments/"' in body
    assert "not in the catalog" in body  # group:team-pay has no entity


def test_the_yaml_tab_shows_the_document_and_the_ingested_properties(user_client):
    (entity,) = entities_upsert(documents=[component("checkout")]).entities
    link = {"integration_id": 3, "integration_name": "acme", "action": "REGISTER"}
    entities_ingested_write(
        ingested={entity.pk: ([link], {"BitbucketCloud": {"full_name": "acme/checkout"}})}
    )
    response = user_client.get("/catalog/default/component/checkout/yaml")
    assert "Ingested Properties" in response.content.decode()
    assert "integration_name: acme" in response.context["ingested_yaml"]
    assert "full_name: acme/checkout" in response.context["ingested_yaml"]
    assert "kind: Component" in response.context["yaml"]


def test_the_yaml_download_is_an_attachment(user_client):
    entities_upsert(documents=[component("checkout")])
    response = user_client.get("/catalog/default/component/checkout/yaml/download")
    assert response["Content-Type"].startswith("application/yaml")
    assert "attachment" in response["Content-Disposition"]
    assert b"name: checkout" in response.content


def test_the_entity_picker_finds_visible_entities(user_client):
    entities_upsert(documents=[component("payments"), component("search")])
    data = user_client.get("/catalog/entity-picker", {"q": "pay"}).json()
    assert [item["ref"] for item in data["results"]] == ["component:default/payments"]


def test_an_unknown_entity_is_404(user_client):
    assert Entity.objects.count() == 0
    assert user_client.get("/catalog/default/component/nope/").status_code == 404


def test_the_orphans_filter_lists_entities_whose_source_is_gone(user_client):
    orphan = {"backstage.io/orphan": "true"}
    entities_upsert(
        documents=[
            component("gone-svc", metadata={"annotations": orphan}),
            component("live-svc", metadata={"annotations": {"backstage.io/orphan": "false"}}),
            component("plain-svc"),
        ]
    )
    response = user_client.get("/catalog/", {"orphan": "true"})
    assert names(response) == ["gone-svc"]
    body = response.content.decode()
    assert 'name="orphan" value="true" id="id_orphan" checked' in body
    assert "1 entity match the filters" in body
    assert names(user_client.get("/catalog/")) == ["gone-svc", "live-svc", "plain-svc"]
    assert names(user_client.get("/catalog/", {"orphan": "true", "q": "live"})) == []


def test_the_orphans_filter_costs_the_same_statements_as_any_filter(user_client):
    """The list's 13 (see above): the filter is one more indexed search-table condition."""
    orphan = {"backstage.io/orphan": "true"}
    entities_upsert(
        documents=[component(f"o-{i}", metadata={"annotations": orphan}) for i in range(30)]
    )
    with CaptureQueriesContext(connection) as captured:
        response = user_client.get("/catalog/", {"orphan": "true", "kind": "Component"})
    assert len(response.context["entities"]) == 25
    assert len(captured) == 13
