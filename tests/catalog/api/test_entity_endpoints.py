"""by-name, by-uid, by-refs, facets, ancestry, refresh, validate-entity, and permissions."""

import uuid

import pytest
import yaml
from django.test import override_settings
from rest_framework.test import APIClient

from catalog.models import Entity, EntitySearch, Relation
from catalog.services import entities_upsert, refresh_handler_register

API = "/api/catalog"


def test_by_name_is_case_insensitive(reader_client, catalog):
    response = reader_client.get(f"{API}/entities/by-name/Component/Default/ALPHA")
    assert response.status_code == 200
    body = response.json()
    assert body["metadata"]["uid"] == str(catalog["alpha"].uid)
    assert {"type": "ownedBy", "targetRef": "group:default/team-a"} in [
        {k: r[k] for k in ("type", "targetRef")} for r in body["relations"]
    ]


def test_by_name_missing_is_a_backstage_not_found(reader_client, catalog):
    response = reader_client.get(f"{API}/entities/by-name/component/default/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "name": "NotFoundError",
            "message": "No entity named 'component:default/nope' found",
        },
        "request": {"method": "GET", "url": f"{API}/entities/by-name/component/default/nope"},
        "response": {"statusCode": 404},
    }


def test_yaml_and_json_render_the_same_document(reader_client, catalog):
    url = f"{API}/entities/by-name/component/default/alpha"
    as_json = reader_client.get(url).json()
    response = reader_client.get(url, HTTP_ACCEPT="application/yaml")
    assert response["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.content) == as_json
    assert yaml.safe_load(reader_client.get(url, {"format": "yaml"}).content) == as_json


def test_by_uid(reader_client, catalog):
    response = reader_client.get(f"{API}/entities/by-uid/{catalog['bravo'].uid}")
    assert response.json()["metadata"]["name"] == "bravo"
    assert reader_client.get(f"{API}/entities/by-uid/{uuid.uuid4()}").status_code == 404
    assert reader_client.get(f"{API}/entities/by-uid/not-a-uuid").status_code == 404


def test_delete_by_uid_needs_the_delete_permission(make_user, bearer_client, catalog):
    url = f"{API}/entities/by-uid/{catalog['alpha'].uid}"
    reader = bearer_client(make_user("reader"))
    response = reader.delete(url)
    assert response.status_code == 403
    assert response.json()["error"]["name"] == "NotAllowedError"
    assert Entity.objects.filter(pk=catalog["alpha"].pk).exists()

    deleter = bearer_client(make_user("deleter", "catalog.delete_entity"))
    assert deleter.delete(url).status_code == 204
    assert not Entity.objects.filter(pk=catalog["alpha"].pk).exists()
    assert not EntitySearch.objects.filter(entity_id=catalog["alpha"].pk).exists()
    assert not Relation.objects.filter(originating_entity_id=catalog["alpha"].pk).exists()
    assert deleter.delete(url).status_code == 404


def test_by_refs_keeps_request_order_with_null_for_missing(reader_client, catalog):
    refs = ["component:default/charlie", "component:default/missing", "Group:team-a", "bad:"]
    response = reader_client.post(
        f"{API}/entities/by-refs", {"entityRefs": refs, "fields": ["metadata.name"]}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {
        "items": [{"metadata": {"name": "charlie"}}, None, {"metadata": {"name": "team-a"}}, None]
    }


def test_by_refs_with_a_query_or_filter_nulls_the_entities_it_excludes(reader_client, catalog):
    refs = ["component:default/alpha", "component:default/bravo"]
    by_query = reader_client.post(
        f"{API}/entities/by-refs",
        {"entityRefs": refs, "fields": ["metadata.name"], "query": {"spec.type": "website"}},
        format="json",
    )
    assert by_query.json()["items"] == [None, {"metadata": {"name": "bravo"}}]
    by_filter = reader_client.post(
        f"{API}/entities/by-refs?filter=spec.type%3Dservice",
        {"entityRefs": refs, "fields": ["metadata.name"]},
        format="json",
    )
    assert by_filter.json()["items"] == [{"metadata": {"name": "alpha"}}, None]


def test_by_refs_refuses_a_body_without_entity_refs(reader_client, catalog):
    response = reader_client.post(f"{API}/entities/by-refs", {"refs": []}, format="json")
    assert response.status_code == 400
    assert "entityRefs" in response.json()["error"]["message"]


def test_facets_count_each_entity_once_with_original_case(reader_client, catalog):
    response = reader_client.get(
        f"{API}/entity-facets", {"facet": ["kind", "metadata.tags"], "filter": "kind=component"}
    )
    facets = response.json()["facets"]
    assert facets["kind"] == [{"value": "Component", "count": 6}]
    tags = {item["value"]: item["count"] for item in facets["metadata.tags"]}
    assert tags == {"java": 2, "python": 2, "spring": 1, "django": 1, "go": 1}


def test_facets_with_a_predicate_query(reader_client, catalog):
    response = reader_client.post(
        f"{API}/entity-facets",
        {"facets": ["spec.type"], "query": {"kind": "component", "spec.owner": "team-b"}},
        format="json",
    )
    assert response.json() == {
        "facets": {
            "spec.type": [{"value": "library", "count": 1}, {"value": "website", "count": 1}]
        }
    }


def test_facets_without_a_facet_parameter_is_an_input_error(reader_client, catalog):
    assert reader_client.get(f"{API}/entity-facets").status_code == 400


def test_facet_counts_run_a_constant_number_of_queries(
    reader_client, catalog, django_assert_max_num_queries
):
    with django_assert_max_num_queries(5):
        reader_client.get(f"{API}/entity-facets", {"facet": ["kind", "spec.type"]})


def test_ancestry_walks_up_to_the_location(reader_client, db):
    location = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": "repo"},
        "spec": {"type": "url", "target": "https://example.com/catalog-info.yaml"},
    }
    child = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "System",
        "metadata": {
            "name": "shop",
            "annotations": {
                "backstage.io/managed-by-location": "url:https://example.com/catalog-info.yaml"
            },
        },
        "spec": {"owner": "team-a"},
    }
    entities_upsert(documents=[location, child])
    body = reader_client.get(f"{API}/entities/by-name/system/default/shop/ancestry").json()
    assert body["rootEntityRef"] == "system:default/shop"
    assert [(i["entity"]["metadata"]["name"], i["parentEntityRefs"]) for i in body["items"]] == [
        ("shop", ["location:default/repo"]),
        ("repo", []),
    ]
    missing = reader_client.get(f"{API}/entities/by-name/system/default/nope/ancestry")
    assert missing.status_code == 404


def test_refresh_calls_registered_sources_and_needs_permission(make_user, bearer_client, catalog):
    refreshed = []
    refresh_handler_register(lambda entity: refreshed.append(entity.ref) or True)
    body = {"entityRef": "component:default/alpha"}
    reader = bearer_client(make_user("reader"))
    assert reader.post(f"{API}/refresh", body, format="json").status_code == 403
    editor = bearer_client(make_user("editor", "catalog.change_entity"))
    response = editor.post(f"{API}/refresh", body, format="json")
    assert response.status_code == 200
    assert refreshed == ["component:default/alpha"]
    missing = editor.post(f"{API}/refresh", {"entityRef": "component:x/none"}, format="json")
    assert missing.status_code == 404


def test_validate_entity_accepts_a_valid_entity(reader_client, db):
    entity = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "ok"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }
    response = reader_client.post(
        f"{API}/validate-entity", {"entity": entity, "location": "url:https://x"}, format="json"
    )
    assert response.status_code == 200
    assert not Entity.objects.exists()


def test_validate_entity_lists_every_error_in_backstage_shape(reader_client, db):
    entity = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "-bad-"},
        "spec": {"type": "service"},
    }
    response = reader_client.post(
        f"{API}/validate-entity", {"entity": entity, "location": "url:https://x"}, format="json"
    )
    assert response.status_code == 400
    messages = [error["message"] for error in response.json()["errors"]]
    assert any(m.startswith("metadata.name:") for m in messages)
    assert any(m.startswith("spec.lifecycle:") for m in messages)
    assert any(m.startswith("spec.owner:") for m in messages)
    assert {error["name"] for error in response.json()["errors"]} == {"InputError"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/entities", None),
        ("get", "/entities/by-query", None),
        ("post", "/entities/by-query", {"query": {}}),
        ("get", "/entities/by-name/component/default/alpha", None),
        ("post", "/entities/by-refs", {"entityRefs": []}),
        ("get", "/entity-facets?facet=kind", None),
        ("post", "/validate-entity", {"entity": {}}),
    ],
)
def test_anonymous_reads_are_refused_with_401(catalog, method, path, body):
    response = getattr(APIClient(), method)(f"{API}{path}", body, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["name"] == "AuthenticationError"
    assert response["WWW-Authenticate"] == "Bearer"


def test_anonymous_reads_can_be_allowed_by_setting(catalog):
    with override_settings(LANTERN_CATALOG_ANONYMOUS_READ=True):
        assert APIClient().get(f"{API}/entities").status_code == 200
        delete = APIClient().delete(f"{API}/entities/by-uid/{catalog['alpha'].uid}")
        assert delete.status_code == 401
    assert Entity.objects.filter(pk=catalog["alpha"].pk).exists()


def test_an_invalid_bearer_token_is_refused(catalog):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer lnt_forged")
    assert client.get(f"{API}/entities").status_code == 401


def test_session_authentication_works_for_readers(make_user, catalog):
    client = APIClient()
    client.force_login(make_user("browser"))
    assert client.get(f"{API}/entities").status_code == 200


def test_users_see_entities_of_their_scopes_and_below_only(make_user, bearer_client, db):
    from catalog.models import Scope, ScopeMembership

    acme = Scope.objects.create(name="Acme", slug="acme", kind=Scope.Kind.ACCOUNT)
    shop = Scope.objects.create(name="Shop", slug="shop", kind=Scope.Kind.ORG, parent=acme)
    web = Scope.objects.create(name="Web", slug="web", kind=Scope.Kind.PROJECT, parent=shop)
    other = Scope.objects.create(name="Other", slug="other", kind=Scope.Kind.ACCOUNT)
    shopper = Scope.objects.create(name="Shopper", slug="shopper", kind=Scope.Kind.ORG, parent=acme)

    def doc(name):
        return {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": name},
            "spec": {"type": "team", "children": []},
        }

    entities_upsert(documents=[doc("global")])
    for scope in (acme, shop, web, other, shopper):
        entities_upsert(documents=[doc(f"in-{scope.slug}")], scope=scope)
    user = make_user("shop-dev")
    ScopeMembership.objects.create(user=user, scope=shop)
    body = bearer_client(user).get(f"{API}/entities", {"fields": "metadata.name"}).json()
    assert sorted(item["metadata"]["name"] for item in body) == ["global", "in-shop", "in-web"]
    hidden = Entity.objects.get(name="in-other")
    assert bearer_client(user).get(f"{API}/entities/by-uid/{hidden.uid}").status_code == 404
    admin = make_user("root")
    admin.is_superuser = True
    admin.save()
    assert len(bearer_client(admin).get(f"{API}/entities").json()) == 6
