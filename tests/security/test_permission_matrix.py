"""Who may write: every mutating API operation (from the OpenAPI schema) and every UI route that
accepts POST (from the URL resolver), for each role.

API: anonymous → 401; signed in without the operation's permission (with no permission at all,
and with every other permission) → 403; with it → let through (2xx, or a 4xx about the empty
body). UI: anonymous → the login page; without ``integrations.edit_integration`` → 403; with it
→ let through. A refused request changes nothing that is stored.
"""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from integrations.models import Connector, Integration
from tests.security.conftest import (
    API_PERMISSIONS,
    UI_PERMISSIONS,
    PathObjects,
    mutating_operations,
    stored_state,
    ui_routes,
)

ROLES = ("anonymous", "no_permission", "other_permissions", "permitted")
ALL_PERMISSIONS = sorted({*API_PERMISSIONS.values(), *UI_PERMISSIONS.values()} - {None})
LET_THROUGH_API = {200, 201, 202, 204, 207, 400, 409}


def _user(make_user, role: str, needed: str | None):
    if role == "anonymous":
        return None
    if role == "no_permission":
        return make_user("plain")
    if role == "other_permissions":
        return make_user("other", *[perm for perm in ALL_PERMISSIONS if perm != needed])
    return make_user("permitted", *([needed] if needed else []))


# -- the enumeration itself ----------------------------------------------------------------------


def test_every_mutating_api_operation_has_a_declared_permission():
    """A new POST/PUT/PATCH/DELETE operation fails here until it is classified in
    ``API_PERMISSIONS`` (and so is checked by the matrix below)."""
    enumerated = {op.operation_id for op in mutating_operations()}
    assert len(enumerated) >= 17
    assert {"integrations_sync", "catalog_entity_delete", "integrations_connectors_create"} <= (
        enumerated
    )
    assert enumerated == set(API_PERMISSIONS)


@pytest.mark.django_db
def test_every_ui_route_accepting_post_has_a_declared_permission(path_objects: PathObjects):
    """Which UI routes take a POST is found by asking each one (an anonymous POST is refused
    with 405 by a route that does not take it, before anything else happens)."""
    client = Client()
    accepting = set()
    routes = ui_routes()
    assert len(routes) >= 20
    for route in routes:
        response = client.post(path_objects.ui_url(route))
        if response.status_code != 405:
            accepting.add(route.name)
    assert accepting == set(UI_PERMISSIONS)


# -- the API matrix ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("operation", mutating_operations(), ids=str)
def test_api_mutation_permission_matrix(
    operation, path_objects: PathObjects, make_user, bearer_client, subtests
):
    """The roles in order on one set of objects: the refused ones must leave it untouched."""
    needed = API_PERMISSIONS[operation.operation_id]
    path = path_objects.api_path(operation)
    for role in ROLES:
        with subtests.test(role=role):
            user = _user(make_user, role, needed)
            client = bearer_client(user) if user is not None else APIClient()
            before = stored_state()
            response = client.generic(operation.method, path, "{}", "application/json")
            if role == "anonymous":
                assert response.status_code == 401, response.content
                assert response.json()["error"]["name"] == "AuthenticationError"
                assert response["WWW-Authenticate"] == "Bearer"
            elif needed is not None and role != "permitted":
                assert response.status_code == 403, response.content
                error = response.json()["error"]
                assert error["name"] == "NotAllowedError"
                assert needed in error["message"]
            else:
                assert response.status_code in LET_THROUGH_API, response.content
            if response.status_code in (401, 403):
                assert stored_state() == before


@pytest.mark.django_db
def test_a_permission_granted_through_a_group_counts(path_objects, make_user, bearer_client):
    group = Group.objects.create(name="editors")
    group.permissions.add(Permission.objects.get(codename="edit_integration"))
    user = make_user("grouped")
    user.groups.add(group)
    response = bearer_client(user).post(f"/api/integrations/{path_objects.integration.pk}/sync")
    assert response.status_code == 202


# -- the UI matrix -------------------------------------------------------------------------------

UI_POST_ROUTES = [route for route in ui_routes() if route.name in UI_PERMISSIONS]


@pytest.mark.django_db
@pytest.mark.parametrize("route", UI_POST_ROUTES, ids=str)
def test_ui_action_permission_matrix(route, path_objects: PathObjects, make_user, subtests):
    needed = UI_PERMISSIONS[route.name]
    url = path_objects.ui_url(route)
    for role in ROLES:
        with subtests.test(role=role):
            user = _user(make_user, role, needed)
            client = Client()
            if user is not None:
                client.force_login(user)
            before = stored_state()
            response = client.post(url, {})
            if role == "anonymous":
                assert response.status_code == 302
                assert response["Location"].startswith("/accounts/login/?next=")
            elif role != "permitted":
                assert response.status_code == 403
            else:
                assert response.status_code in (200, 302), response.content
                if response.status_code == 302:
                    assert not response["Location"].startswith("/accounts/login/")
            if role != "permitted":
                assert stored_state() == before


# -- account-level objects and a scoped administrator ---------------------------------------------
#
# An integration or connector of no scope belongs to the whole account: only a user whose
# permission is not limited to a scope (a superuser, or a holder of the permission with no scope
# membership) may change it. A scoped administrator — every permission, member of one scope —
# sees it read-only (403 with the reason) and changes the objects of its own scope as before.

# The operations on one connector or integration (the creates have no object; with an empty
# body they answer 400 before anything else).
ACCOUNT_LEVEL_API = [
    op
    for op in mutating_operations()
    if op.operation_id.startswith("integrations_") and "{" in op.path
]
ACCOUNT_LEVEL_UI = [route for route in UI_POST_ROUTES if route.name != "integrations:wizard"]
ACCOUNT_LEVEL_MESSAGE = "belongs to the whole account"


@pytest.fixture
def scoped_admin(make_user, make_scope, member_of):
    user = make_user("scoped-admin", *ALL_PERMISSIONS)
    scope = make_scope("alpha")
    member_of(user, scope)
    return user, scope


def _move_into(path_objects: PathObjects, scope) -> None:
    Integration.objects.filter(pk=path_objects.integration.pk).update(scope=scope)
    Connector.objects.filter(pk=path_objects.connector.pk).update(scope=scope)


def test_the_matrix_covers_every_operation_on_an_integration_or_connector():
    assert {op.operation_id for op in ACCOUNT_LEVEL_API} == {
        "integrations_connectors_update",
        "integrations_connectors_destroy",
        "integrations_update",
        "integrations_destroy",
        "integrations_sync",
        "integrations_suspend",
        "integrations_resume",
        "integrations_import",
        "integrations_imported_unlink",
        "integrations_write_back",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("operation", ACCOUNT_LEVEL_API, ids=str)
def test_api_a_scoped_admin_cannot_change_account_level_objects(
    operation, path_objects: PathObjects, scoped_admin, bearer_client
):
    user, _ = scoped_admin
    assert path_objects.integration.scope_id is None and path_objects.connector.scope_id is None
    before = stored_state()
    response = bearer_client(user).generic(
        operation.method, path_objects.api_path(operation), "{}", "application/json"
    )
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["name"] == "NotAllowedError"
    assert ACCOUNT_LEVEL_MESSAGE in error["message"] and "alpha" in error["message"]
    assert stored_state() == before


@pytest.mark.django_db
@pytest.mark.parametrize("operation", ACCOUNT_LEVEL_API, ids=str)
def test_api_a_scoped_admin_changes_the_objects_of_its_scope(
    operation, path_objects: PathObjects, scoped_admin, bearer_client
):
    user, scope = scoped_admin
    _move_into(path_objects, scope)
    response = bearer_client(user).generic(
        operation.method, path_objects.api_path(operation), "{}", "application/json"
    )
    assert response.status_code in LET_THROUGH_API, response.content


@pytest.mark.django_db
def test_api_an_unscoped_editor_changes_account_level_objects(
    path_objects, make_user, bearer_client
):
    """The permission without any scope membership is not limited to a scope."""
    user = make_user("account-editor", "integrations.edit_integration")
    client = bearer_client(user)
    response = client.post(f"/api/integrations/{path_objects.integration.pk}/suspend")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
@pytest.mark.usefixtures("fake_provider")
def test_api_a_scoped_admin_cannot_create_account_level_objects(scoped_admin, bearer_client):
    user, scope = scoped_admin
    client = bearer_client(user)
    body = {"name": "c", "provider": "fake", "auth_kind": "none", "config": {"world": "w"}}
    response = client.post("/api/integrations/connectors", body, format="json")
    assert response.status_code == 403, response.content
    assert "give it one of your scopes" in response.json()["error"]["message"]
    assert not Connector.objects.filter(name="c").exists()
    response = client.post(
        "/api/integrations/connectors", {**body, "scope": scope.path}, format="json"
    )
    assert response.status_code == 201, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("route", ACCOUNT_LEVEL_UI, ids=str)
def test_ui_a_scoped_admin_cannot_change_account_level_objects(
    route, path_objects: PathObjects, scoped_admin
):
    user, _ = scoped_admin
    client = Client()
    client.force_login(user)
    before = stored_state()
    response = client.post(path_objects.ui_url(route), {})
    if route.name.startswith("integrations:"):
        assert response.status_code == 403
        assert ACCOUNT_LEVEL_MESSAGE in response.content.decode()
        assert stored_state() == before
    else:  # the catalog's own routes do not concern integrations
        assert response.status_code in (200, 302, 404)


@pytest.mark.django_db
@pytest.mark.parametrize("route", ACCOUNT_LEVEL_UI, ids=str)
def test_ui_a_scoped_admin_changes_the_objects_of_its_scope(
    route, path_objects: PathObjects, scoped_admin
):
    user, scope = scoped_admin
    _move_into(path_objects, scope)
    client = Client()
    client.force_login(user)
    response = client.post(path_objects.ui_url(route), {})
    assert response.status_code in (200, 302), response.content


@pytest.mark.django_db
def test_ui_a_scoped_admin_sees_account_level_integrations_read_only(path_objects, scoped_admin):
    user, scope = scoped_admin
    client = Client()
    client.force_login(user)
    pk = path_objects.integration.pk
    page = client.get(reverse("integrations:configuration", args=[pk])).content.decode()
    assert ACCOUNT_LEVEL_MESSAGE in page
    assert reverse("integrations:suspend", args=[pk]) not in page
    assert reverse("integrations:delete", args=[pk]) not in page
    assert 'value="Sync now"' not in page and ">Sync now<" not in page
    _move_into(path_objects, scope)
    page = client.get(reverse("integrations:configuration", args=[pk])).content.decode()
    assert reverse("integrations:suspend", args=[pk]) in page


@pytest.mark.django_db
def test_admin_a_scoped_staff_user_sees_account_level_connectors_read_only(
    path_objects, scoped_admin
):
    user, scope = scoped_admin
    user.is_staff = True
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="integrations",
            codename__in=["view_connector", "change_connector", "delete_connector"],
        )
    )
    user.save()
    client = Client()
    client.force_login(user)
    connector = path_objects.connector
    url = reverse("admin:integrations_connector_change", args=[connector.pk])
    before = stored_state()
    page = client.get(url)
    assert page.status_code == 200
    assert 'name="name"' not in page.content.decode()  # the read-only view
    response = client.post(url, {"name": "renamed", "auth_kind": "none", "config": "{}"})
    assert response.status_code == 403
    assert stored_state() == before
    _move_into(path_objects, scope)
    assert 'name="name"' in client.get(url).content.decode()
