"""The catalog's locations API over a Bitbucket Cloud sandbox: a ``url`` location is read through
the integration that owns the workspace (its connector, guard and budget), refusals are clear
4xx answers that store nothing, and processing errors show in ``status.items``."""

import pytest
import yaml
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.locations import location_refresh
from catalog.models import Entity, Location, ScopeMembership
from catalog.tasks import refresh_due_locations
from integrations import services
from tests.integrations.api.conftest import make_scope  # noqa: F401
from tests.integrations.catalog_snapshot import snapshot
from tests.sandbox.fixtures import SANDBOX_TOKEN

WS = "acme"
REPO = "feeds-api"  # has a catalog-info.yaml on main in cloud_world_factory's world
BARE_REPO = "scheduler-sdk"  # has none
PERMS = ("catalog.add_location", "catalog.delete_location", "catalog.change_entity")


@pytest.fixture
def integration(db, cloud_sandbox):
    connector = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=cloud_sandbox.api_url,
        secrets={"token": SANDBOX_TOKEN},
        config={},
    )
    return services.integration_create(connector=connector, name="acme", target={"workspace": WS})


@pytest.fixture
def api(make_user, bearer_client):
    return bearer_client(make_user("locator", *PERMS))


def file_url(sandbox, repo: str = REPO, path: str = "catalog-info.yaml", ref: str = "main"):
    return f"{sandbox.url}/{WS}/{repo}/src/{ref}/{path}"


def write(sandbox, content: str, repo: str = REPO, path: str = "catalog-info.yaml") -> None:
    sandbox.world.file_write(workspace=WS, slug=repo, path=path, content=content)


def component(name: str) -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }


def add(api, target: str, **query):
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return api.post(
        f"/api/catalog/locations{'?' + suffix if suffix else ''}",
        {"type": "url", "target": target},
        format="json",
    )


def test_a_dry_run_lists_the_entities_and_stores_nothing(api, integration, cloud_sandbox):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds"), component("feeds-worker")]))
    before = snapshot()
    response = add(api, file_url(cloud_sandbox), dryRun="true")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["exists"] is False
    assert body["location"]["target"] == file_url(cloud_sandbox)
    names = [(e["kind"], e["metadata"]["name"]) for e in body["entities"]]
    location_name = Location(type="url", target=file_url(cloud_sandbox)).entity_name
    assert names == [
        ("Location", location_name),
        ("Component", "feeds"),
        ("Component", "feeds-worker"),
    ]
    annotations = body["entities"][1]["metadata"]["annotations"]
    assert annotations["backstage.io/managed-by-location"] == f"url:{file_url(cloud_sandbox)}"
    assert annotations["backstage.io/managed-by-origin-location"] == (
        f"url:{file_url(cloud_sandbox)}"
    )
    assert snapshot() == before
    assert not Location.objects.exists()


def test_adding_a_location_stores_its_entities_with_the_integrations_scope(
    api,
    integration,
    cloud_sandbox,
    make_scope,  # noqa: F811
):
    scope = make_scope("alpha")
    integration.scope = scope
    integration.save(update_fields=["scope"])
    ScopeMembership.objects.create(user=User.objects.get(username="locator"), scope=scope)
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    response = add(api, file_url(cloud_sandbox))
    assert response.status_code == 201, response.content
    location = Location.objects.get()
    assert response.json() == {
        "location": {
            "id": str(location.pk),
            "type": "url",
            "target": file_url(cloud_sandbox),
            "entityRef": location.entity_ref,
        },
        "entities": [],
    }
    assert location.source == f"integration:{integration.pk}"
    feeds = Entity.objects.get(name="feeds")
    assert (feeds.location_id, feeds.scope_id) == (location.pk, scope.pk)
    assert Entity.objects.get(kind="Location").location_id == location.pk
    # Read with the integration's credential: the sandbox saw its token.
    assert any(
        entry.path.endswith("/src/main/catalog-info.yaml")
        for entry in cloud_sandbox.api.log.entries()
    )

    again = add(api, file_url(cloud_sandbox))
    assert again.status_code == 409
    assert again.json()["error"]["name"] == "ConflictError"
    refreshed = add(api, file_url(cloud_sandbox), onConflict="refresh")
    assert refreshed.status_code == 201
    assert refreshed.json()["exists"] is True


@pytest.mark.parametrize(
    ("target", "status", "words"),
    [
        ("https://gitlab.example.com/acme/x/-/raw/main/catalog-info.yaml", 400, "No integration"),
        ("http://169.254.169.254/latest/meta-data/catalog-info.yaml", 400, "internal address"),
        ("http://10.1.2.3/acme/feeds-api/src/main/catalog-info.yaml", 400, "internal address"),
        ("ftp://127.0.0.1/catalog-info.yaml", 400, "http(s) URL"),
    ],
)
def test_a_url_no_integration_owns_is_refused(api, integration, target, status, words):
    before = snapshot()
    response = add(api, target)
    assert response.status_code == status, response.content
    assert words in response.json()["error"]["message"]
    assert snapshot() == before and not Location.objects.exists()


def test_another_workspace_on_the_sandbox_host_is_not_the_integrations(
    api, integration, cloud_sandbox
):
    response = add(api, f"{cloud_sandbox.url}/other-ws/{REPO}/src/main/catalog-info.yaml")
    assert response.status_code == 400
    assert "no integration owns it" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (None, 404, "has no file"),
        ("kind: [unclosed\n", 400, "invalid YAML"),
        ("---\nkind: Component\n" * 10_000, 400, "more than 1000 entity documents"),
        ("- just\n- a list\n", 400, "must be a mapping"),
        (yaml.safe_dump({"kind": "Component", "metadata": {"name": "Not valid!"}}), 400, "name"),
    ],
    ids=["missing", "invalid-yaml", "10000-documents", "not-a-mapping", "invalid-entity"],
)
def test_a_file_that_cannot_be_stored_is_a_clear_4xx_and_stores_nothing(
    api, integration, cloud_sandbox, content, status, words
):
    path = "missing/catalog-info.yaml" if content is None else "catalog-info.yaml"
    if content is not None:
        write(cloud_sandbox, content)
    before = snapshot()
    for query in ({"dryRun": "true"}, {}):
        response = add(api, file_url(cloud_sandbox, path=path), **query)
        assert response.status_code == status, response.content
        assert words in response.json()["error"]["message"]
    assert snapshot() == before and not Location.objects.exists()


def test_a_repository_outside_the_workspace_listing_is_not_found(api, integration, cloud_sandbox):
    response = add(api, file_url(cloud_sandbox, repo="no-such-repo"))
    assert response.status_code == 404
    assert response.json()["error"]["name"] == "NotFoundError"


def test_an_entity_held_by_something_else_is_a_conflict(
    api, integration, cloud_sandbox, make_entities
):
    make_entities(component("feeds"))
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    response = add(api, file_url(cloud_sandbox))
    assert response.status_code == 409
    assert "component:default/feeds already exists" in response.json()["error"]["message"]
    assert not Location.objects.exists()


def _status(api, name: str) -> dict | None:
    return api.get(f"/api/catalog/entities/by-name/component/default/{name}").json().get("status")


def test_a_failed_refresh_shows_in_status_items_and_a_good_one_clears_it(
    api, integration, cloud_sandbox, django_capture_on_commit_callbacks
):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    assert add(api, file_url(cloud_sandbox)).status_code == 201
    assert _status(api, "feeds") is None

    write(cloud_sandbox, "kind: [unclosed\n")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/catalog/refresh", {"entityRef": "component:feeds"}, format="json")
    assert response.status_code == 200
    status = _status(api, "feeds")
    assert status is not None and len(status["items"]) == 1
    item = status["items"][0]
    assert (item["type"], item["level"], item["error"]["name"]) == (
        "backstage.io/catalog-processing",
        "error",
        "InputError",
    )
    assert "invalid YAML" in item["error"]["message"]
    assert item["message"] == f"InputError: {item['error']['message']}"
    assert Location.objects.get().last_error["name"] == "InputError"

    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/catalog/refresh", {"entityRef": "component:feeds"}, format="json")
    assert _status(api, "feeds") is None
    assert Location.objects.get().last_error == {}


def test_an_entity_the_file_drops_is_orphaned_and_deleting_the_location_orphans_the_rest(
    api, integration, cloud_sandbox, django_capture_on_commit_callbacks
):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds"), component("feeds-worker")]))
    location_id = add(api, file_url(cloud_sandbox)).json()["location"]["id"]
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    Location.objects.update(next_refresh_at="2000-01-01T00:00:00Z")
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh_due_locations() == 1  # the schedule reads it again

    orphans = api.get(
        "/api/catalog/entities?filter=metadata.annotations.backstage.io/orphan=true"
    ).json()
    assert [e["metadata"]["name"] for e in orphans] == ["feeds-worker"]

    response = api.delete(f"/api/catalog/locations/{location_id}")
    assert response.status_code == 204
    orphans = api.get(
        "/api/catalog/entities?filter=metadata.annotations.backstage.io/orphan=true"
    ).json()
    assert sorted(e["metadata"]["name"] for e in orphans) == ["feeds", "feeds-worker"]
    assert not Entity.objects.filter(kind="Location").exists()
    assert not Location.objects.exists()

    # Registering it again takes its former entities back.
    assert add(api, file_url(cloud_sandbox)).status_code == 201
    feeds = Entity.objects.get(name="feeds")
    assert "backstage.io/orphan" not in feeds.annotations and feeds.location_id is not None


def test_analyze_a_file_and_a_repository_without_one(api, integration, cloud_sandbox):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    body = {"location": {"type": "url", "target": f"{cloud_sandbox.url}/{WS}/{REPO}"}}
    response = api.post("/api/catalog/analyze-location", body, format="json")
    assert response.status_code == 200, response.content
    (existing,) = response.json()["existingEntityFiles"]
    assert existing["location"] == {"type": "url", "target": file_url(cloud_sandbox)}
    assert existing["isRegistered"] is False
    assert existing["entity"]["metadata"]["name"] == "feeds"
    assert response.json()["generateEntities"] == []

    body = {"location": {"type": "url", "target": f"{cloud_sandbox.url}/{WS}/{BARE_REPO}"}}
    response = api.post("/api/catalog/analyze-location", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["existingEntityFiles"] == []
    (generated,) = response.json()["generateEntities"]
    assert generated["entity"]["metadata"]["name"] == BARE_REPO
    assert generated["entity"]["kind"] == "Component"
    fields = {f["field"]: f["state"] for f in generated["fields"]}
    assert fields["spec.owner"] == "needsUserInput"
    assert not Location.objects.exists() and not Entity.objects.exists()


def test_adding_and_deleting_need_their_permissions(make_user, bearer_client, integration):
    plain = bearer_client(make_user("plain"))
    response = add(plain, "https://bitbucket.example.com/x")
    assert response.status_code == 403
    assert "catalog.add_location" in response.json()["error"]["message"]


def test_the_admin_refreshes_and_deletes_through_the_services(
    api, integration, cloud_sandbox, django_user_model
):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    assert add(api, file_url(cloud_sandbox)).status_code == 201
    location = Location.objects.get()
    admin = django_user_model.objects.create_superuser("root", password="pw-unused-123")
    client = Client()
    client.force_login(admin)
    changelist = reverse("admin:catalog_location_changelist")

    write(cloud_sandbox, "kind: [unclosed\n")
    action = {"action": "refresh_selected", "_selected_action": [str(location.pk)]}
    response = client.post(changelist, action, follow=True)
    assert "Refreshed 0, 1 failed." in response.content.decode()
    assert Entity.objects.get(name="feeds").status_items[0]["level"] == "error"

    response = client.post(
        reverse("admin:catalog_location_delete", args=[location.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Location.objects.exists()
    assert Entity.objects.get(name="feeds").annotations["backstage.io/orphan"] == "true"


def test_an_integration_of_another_scope_is_not_read_for_a_member_of_one(
    integration,
    cloud_sandbox,
    make_scope,  # noqa: F811
    make_user,
    bearer_client,
):
    integration.scope = make_scope("bravo")
    integration.save(update_fields=["scope"])
    member = make_user("alpha-member", *PERMS)
    ScopeMembership.objects.create(user=member, scope=make_scope("alpha"))
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    cloud_sandbox.api.log.reset()
    for query in ({"dryRun": "true"}, {}):
        response = add(bearer_client(member), file_url(cloud_sandbox), **query)
        assert response.status_code == 400, response.content
        assert "no integration owns it" in response.json()["error"]["message"]
    body = {"location": {"type": "url", "target": file_url(cloud_sandbox)}}
    response = bearer_client(member).post("/api/catalog/analyze-location", body, format="json")
    assert response.status_code == 400
    assert cloud_sandbox.api.log.entries() == []  # nothing read through bravo's integration
    assert not Location.objects.exists()


def test_pointing_a_location_elsewhere_replaces_its_location_entity_and_orphans_the_rest(
    make_user, bearer_client, integration, cloud_sandbox
):
    api = bearer_client(make_user("editor", *PERMS, "catalog.change_location"))
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    write(cloud_sandbox, yaml.safe_dump_all([component("ledger")]), repo="ledger-web")
    location_id = add(api, file_url(cloud_sandbox)).json()["location"]["id"]
    old_entity_ref = Location.objects.get().entity_ref

    target = file_url(cloud_sandbox, repo="ledger-web")
    response = api.put(
        f"/api/catalog/locations/{location_id}", {"type": "url", "target": target}, format="json"
    )
    assert response.status_code == 200, response.content
    location = Location.objects.get()
    assert response.json() == {
        "id": location_id,
        "type": "url",
        "target": target,
        "entityRef": location.entity_ref,
    }
    locations = Entity.objects.filter(kind="Location")
    assert [e.ref for e in locations] == [location.entity_ref] != [old_entity_ref]
    assert Entity.objects.get(name="ledger").location_id == location.pk
    assert Entity.objects.get(name="feeds").annotations["backstage.io/orphan"] == "true"


def test_ancestry_leads_to_the_location_entity_whatever_the_targets_length(
    api, integration, cloud_sandbox
):
    path = "/".join(["deep-folder-name"] * 14) + "/catalog-info.yaml"  # a 256-character URL
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]), path=path)
    target = file_url(cloud_sandbox, path=path)
    assert len(target) > 200  # longer than a search row's value
    assert add(api, target).status_code == 201
    body = api.get("/api/catalog/entities/by-name/component/default/feeds/ancestry").json()
    location = Location.objects.get()
    assert [item["parentEntityRefs"] for item in body["items"]] == [[location.entity_ref], []]


def test_refreshing_an_unchanged_location_writes_no_entity(api, integration, cloud_sandbox):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds"), component("feeds-worker")]))
    assert add(api, file_url(cloud_sandbox)).status_code == 201
    with CaptureQueriesContext(connection) as queries:
        assert location_refresh(location=Location.objects.get())
    writes = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith(("UPDATE", "INSERT", "DELETE")) and "catalog_entity" in q["sql"]
    ]
    assert writes == []
    assert Location.objects.get().refreshed_at is not None


def test_a_location_whose_integration_is_suspended_shows_the_error_on_its_entities(
    api, integration, cloud_sandbox
):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    assert add(api, file_url(cloud_sandbox)).status_code == 201
    services.integration_suspend(integration=integration)
    assert not location_refresh(location=Location.objects.get())
    (item,) = Entity.objects.get(name="feeds").status_items
    assert "no integration owns it" in item["error"]["message"]
    services.integration_resume(integration=integration)
    assert location_refresh(location=Location.objects.get())
    assert Entity.objects.get(name="feeds").status_items == []


def test_the_entity_page_says_when_its_location_could_not_be_read(
    api, integration, cloud_sandbox, admin_client
):
    write(cloud_sandbox, yaml.safe_dump_all([component("feeds")]))
    assert add(api, file_url(cloud_sandbox)).status_code == 201
    page = reverse("catalog:entity", args=["default", "component", "feeds"])
    assert "could not be read" not in admin_client.get(page).content.decode()
    write(cloud_sandbox, "kind: [unclosed\n")
    location_refresh(location=Location.objects.get())
    content = admin_client.get(page).content.decode()
    assert f"Its location url:{file_url(cloud_sandbox)} could not be read" in content
    assert "invalid YAML" in content
