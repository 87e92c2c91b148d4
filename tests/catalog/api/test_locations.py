"""The locations API without an integration: ``file`` locations under
``LANTERN_LOCATION_FILE_ROOTS``, ``POST /locations/by-query`` and the deletion strategies."""

import pytest
import yaml

from catalog.models import Entity, Location
from tests.catalog.api.conftest import component

PERMS = ("catalog.add_location", "catalog.delete_location")


@pytest.fixture
def api(make_user, bearer_client):
    return bearer_client(make_user("locator", *PERMS))


@pytest.fixture
def root(tmp_path, settings):
    folder = tmp_path / "catalog"
    folder.mkdir()
    settings.LANTERN_LOCATION_FILE_ROOTS = [str(folder)]
    return folder


def add_file(api, path) -> object:
    return api.post("/api/catalog/locations", {"type": "file", "target": str(path)}, format="json")


def test_a_file_location_under_a_root_stores_its_entities(api, root):
    path = root / "catalog-info.yaml"
    path.write_text(yaml.safe_dump_all([component("filed"), component("filed-too")]))
    response = add_file(api, path)
    assert response.status_code == 201, response.content
    location = Location.objects.get()
    assert (location.type, location.target, location.source) == ("file", str(path), "file")
    filed = Entity.objects.get(name="filed")
    assert filed.annotations["backstage.io/managed-by-location"] == f"file:{path}"
    assert filed.location_id == location.pk


def test_file_locations_are_refused_outside_the_roots_and_when_there_are_none(
    api, root, tmp_path, settings
):
    outside = tmp_path / "secret.yaml"
    outside.write_text(yaml.safe_dump(component("secret")))
    escape = root / "link.yaml"
    escape.symlink_to(outside)
    for target in (outside, root / ".." / "secret.yaml", escape):
        response = add_file(api, target)
        assert response.status_code == 403, response.content
        assert "LANTERN_LOCATION_FILE_ROOTS" in response.json()["error"]["message"]
    assert add_file(api, root / "missing.yaml").status_code == 404
    settings.LANTERN_LOCATION_FILE_ROOTS = []
    response = add_file(api, root / "catalog-info.yaml")
    assert response.status_code == 403
    assert "not enabled" in response.json()["error"]["message"]
    assert not Location.objects.exists() and not Entity.objects.exists()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"type": "git", "target": "x"}, "type"),
        ({"type": "url", "target": ""}, "target"),
        ({"type": "url", "target": "https://bitbucket.org/ä/x"}, "printable ASCII"),
        ({"type": "url", "target": "https://" + "a" * 2001}, "2000"),
    ],
)
def test_a_bad_location_body_is_a_400(api, body, words):
    response = api.post("/api/catalog/locations", body, format="json")
    assert response.status_code == 400, response.content
    assert words in response.json()["error"]["message"]


def test_deleting_with_the_delete_strategy_deletes_the_entities(api, root, settings):
    settings.LANTERN_LOCATION_ORPHAN_STRATEGY = "delete"
    path = root / "catalog-info.yaml"
    path.write_text(yaml.safe_dump_all([component("filed")]))
    location_id = add_file(api, path).json()["location"]["id"]
    assert Entity.objects.count() == 2  # the component and the Location entity
    assert api.delete(f"/api/catalog/locations/{location_id}").status_code == 204
    assert not Entity.objects.exists()


@pytest.fixture
def three(db):
    return [
        Location.objects.create(type="url", target="https://bitbucket.org/acme/a/src/main/c.yaml"),
        Location.objects.create(type="url", target="https://bitbucket.org/acme/b/src/main/c.yaml"),
        Location.objects.create(type="file", target="/srv/catalog/c.yaml"),
    ]


def query(api, body):
    return api.post("/api/catalog/locations/by-query", body, format="json")


def test_query_locations_by_predicate(api, three):
    a, b, f = (str(location.pk) for location in three)

    def ids(body) -> list[str]:
        response = query(api, body)
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["items"]]

    assert ids({}) == [a, b, f]
    assert ids({"query": {"type": "URL"}}) == [a, b]
    assert ids({"query": {"target": {"$hasPrefix": "HTTPS://bitbucket.org/acme/b"}}}) == [b]
    assert ids({"query": {"$not": {"type": "url"}}}) == [f]
    assert ids({"query": {"$any": [{"id": a}, {"id": f}]}}) == [a, f]
    assert ids({"query": {"id": {"$in": [b, "not-a-uuid"]}}}) == [b]
    assert ids({"query": {"$all": [{"type": "url"}, {"target": {"$exists": True}}]}}) == [a, b]
    assert ids({"query": {"$any": []}}) == []


def test_query_locations_pages_by_cursor_with_the_total(api, three):
    first = query(api, {"limit": 2}).json()
    assert first["totalItems"] == 3 and len(first["items"]) == 2
    second = query(api, {"cursor": first["pageInfo"]["nextCursor"]}).json()
    assert [i["id"] for i in first["items"] + second["items"]] == [str(x.pk) for x in three]
    assert second["totalItems"] == 3 and second["pageInfo"] == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"query": {"owner": "x"}}, "no field 'owner'"),
        ({"query": {"type": {"$bogus": 1}}}, "Invalid filter predicate"),
        ({"query": {"target": {"$contains": "x"}}}, "Invalid filter predicate"),
        ({"query": {"$all": "x"}}, "expects an array"),
        ({"query": {"$not": {}, "type": "url"}}, "only key"),
        ({"cursor": "not base64!"}, "Malformed cursor"),
        ({"cursor": "eyJxdWVyeSI6MX0="}, "Malformed cursor"),  # {"query":1}
    ],
)
def test_a_bad_location_query_is_a_400(api, three, body, words):
    response = query(api, body)
    assert response.status_code == 400, response.content
    assert words in response.json()["error"]["message"]
