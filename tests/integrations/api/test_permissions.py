"""Who may do what: 401 anonymous, 403 without ``integrations.edit_integration``, and 404 for
whatever lies outside the user's scopes."""

import pytest
from rest_framework.test import APIClient

from integrations import services
from integrations.engine.imports import discovered_import
from integrations.models import Connector, ImportedEntity, Integration
from tests.integrations.api.conftest import API, EDIT

MUTATIONS = [
    ("post", "/connectors", {"name": "x", "provider": "fake", "auth_kind": "none"}),
    ("patch", "/connectors/{connector}", {"name": "renamed"}),
    ("delete", "/connectors/{connector}", None),
    ("post", "/", {"name": "x", "connector": "{connector}"}),
    ("patch", "/{integration}", {"description": "changed"}),
    ("delete", "/{integration}", None),
    ("post", "/{integration}/sync", None),
    ("post", "/{integration}/suspend", None),
    ("post", "/{integration}/resume", None),
    ("post", "/{integration}/import", {"discovered_id": "{discovered}"}),
    ("post", "/{integration}/imported/{imported}/unlink", None),
]
READS = [
    "/connectors",
    "/connectors/{connector}",
    "/",
    "/{integration}",
    "/{integration}/discovered",
    "/{integration}/imported",
    "/{integration}/runs",
]


@pytest.fixture
def ids(synced):
    integration = synced["integration"]
    link = discovered_import(discovered=synced["discovered"]["billing"])
    return {
        "connector": integration.connector_id,
        "integration": integration.pk,
        "discovered": synced["discovered"]["search"].pk,
        "imported": link.pk,
    }


def _fill(template, ids):
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return ids[template[1:-1]]
    return template


def _unchanged(ids) -> None:
    integration = Integration.objects.get(pk=ids["integration"])
    assert (integration.description, integration.state) == ("", "enabled")
    assert Connector.objects.get(pk=ids["connector"]).name == "fake"
    assert Integration.objects.count() == Connector.objects.count() == 1
    assert ImportedEntity.objects.filter(state="linked").count() == 1


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_mutations_need_the_edit_permission(reader_client, ids, method, path, body):
    response = getattr(reader_client, method)(
        API + path.format(**ids), _fill(body, ids), format="json"
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["name"] == "NotAllowedError"
    assert "integrations.edit_integration" in error["message"]
    _unchanged(ids)


@pytest.mark.parametrize(("method", "path", "body"), MUTATIONS)
def test_mutations_need_a_user(ids, method, path, body):
    response = getattr(APIClient(), method)(
        API + path.format(**ids), _fill(body, ids), format="json"
    )
    assert response.status_code == 401
    assert response.json()["error"]["name"] == "AuthenticationError"
    _unchanged(ids)


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_user_but_no_permission(reader_client, ids, path):
    assert APIClient().get(API + path.format(**ids)).status_code == 401
    assert reader_client.get(API + path.format(**ids)).status_code == 200


# Scopes


@pytest.fixture
def scoped(connector, make_scope, make_integration):
    """Integrations in acme/payments, in globex and in no scope; connectors likewise."""
    payments, globex = make_scope("acme/payments"), make_scope("globex")
    make_scope("acme/pay")
    globex_connector = services.connector_create(
        name="globex", provider="fake", auth_kind="none", config={"world": "x"}, scope=globex
    )
    return {
        "acme": make_integration("in-acme", scope=payments),
        "globex": services.integration_create(
            connector=globex_connector, name="in-globex", scope=globex
        ),
        "open": make_integration("open"),
        "globex_connector": globex_connector,
    }


def _names(client, path="/"):
    return sorted(item["name"] for item in client.get(API + path).json()["results"])


def test_members_see_their_scopes_descendants_and_unscoped_objects(
    scoped, make_user, bearer_client, make_scope, member_of
):
    user = make_user("acme-member")
    member_of(user, make_scope("acme"))
    client = bearer_client(user)
    assert _names(client) == ["in-acme", "open"]
    assert _names(client, "/connectors") == ["fake"]
    assert client.get(f"{API}/{scoped['acme'].pk}").status_code == 200


@pytest.mark.parametrize(
    "path", ["", "/discovered", "/imported", "/runs"], ids=["detail", "disc", "imp", "runs"]
)
def test_objects_outside_the_users_scopes_are_404(scoped, make_user, bearer_client, path):
    client = bearer_client(make_user("outsider", EDIT))
    assert client.get(f"{API}/{scoped['globex'].pk}{path}").status_code == 404
    assert client.get(f"{API}/{scoped['open'].pk}{path}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("patch", ""),
        ("delete", ""),
        ("post", "/sync"),
        ("post", "/suspend"),
        ("post", "/resume"),
        ("post", "/import"),
        ("post", "/imported/1/unlink"),
    ],
)
def test_editors_cannot_act_outside_their_scopes(scoped, make_user, bearer_client, method, path):
    client = bearer_client(make_user("outsider", EDIT))
    response = getattr(client, method)(f"{API}/{scoped['globex'].pk}{path}", {}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["name"] == "NotFoundError"
    assert Integration.objects.get(pk=scoped["globex"].pk).state == "enabled"
    connector = scoped["globex_connector"]
    assert client.delete(f"{API}/connectors/{connector.pk}").status_code == 404


def test_a_sibling_scope_sharing_a_prefix_is_not_visible(
    scoped, make_user, bearer_client, make_scope, member_of
):
    user = make_user("pay-member")
    member_of(user, make_scope("acme/pay"))
    assert _names(bearer_client(user)) == ["open"]


def test_superusers_see_everything(scoped, bearer_client, django_user_model):
    admin = django_user_model.objects.create_superuser("admin", password="pw-unused-123")
    assert _names(bearer_client(admin)) == ["in-acme", "in-globex", "open"]


def test_objects_cannot_be_put_in_or_linked_to_scopes_outside_the_users(
    scoped, make_user, bearer_client, make_scope, member_of
):
    user = make_user("acme-editor", EDIT)
    member_of(user, make_scope("acme"))
    client = bearer_client(user)
    response = client.post(
        f"{API}/", {"name": "new", "connector": scoped["globex_connector"].pk}, format="json"
    )
    assert response.status_code == 400
    assert "connector" in response.json()["error"]["details"]
    response = client.post(
        f"{API}/",
        {"name": "new", "connector": scoped["acme"].connector_id, "scope": "globex"},
        format="json",
    )
    assert response.status_code == 400
    assert "scope" in response.json()["error"]["details"]
    response = client.post(
        f"{API}/",
        {"name": "new", "connector": scoped["acme"].connector_id, "scope": "acme/payments"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["scope"] == "acme/payments"
