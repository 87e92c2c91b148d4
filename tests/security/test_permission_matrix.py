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
from rest_framework.test import APIClient

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
