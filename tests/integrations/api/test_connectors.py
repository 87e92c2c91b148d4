"""Connectors: CRUD, write-only secrets encrypted at rest, deletion guarded by use."""

import json

import pytest
from django.db import connection

from integrations.models import Connector
from tests.integrations.api.conftest import API
from tests.integrations.test_private_ca import certificate_pem

SECRET = "s3cr3t-token-value-42"


@pytest.fixture
def token_connector(token_provider, editor_client):
    response = editor_client.post(
        f"{API}/connectors",
        {
            "name": "bb",
            "provider": "fake_token",
            "auth_kind": "api_token",
            "base_url": "https://api.example.com",
            "config": {"email": "ada@example.com"},
            "secrets": {"token": SECRET},
            "ca_pem": certificate_pem(ca=True),  # a valid CA: anything else is refused
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response


def _raw_secrets(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets_encrypted FROM integrations_connector WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_create_answers_without_secrets_and_says_they_are_set(token_connector):
    body = token_connector.json()
    assert body["has_secrets"] is True
    assert body["has_ca_pem"] is True
    assert "secrets" not in body and "secrets_encrypted" not in body and "ca_pem" not in body
    assert SECRET not in json.dumps(body)
    assert body["provider"] == "fake_token"
    assert body["config"] == {"email": "ada@example.com"}
    assert body["health"] == "unknown"


def test_secrets_are_stored_encrypted(token_connector):
    pk = token_connector.json()["id"]
    raw = _raw_secrets(pk)
    assert raw and SECRET not in raw
    assert Connector.objects.get(pk=pk).secrets == {"token": SECRET}


def test_secrets_never_appear_in_list_retrieve_or_update(token_connector, editor_client):
    pk = token_connector.json()["id"]
    responses = [
        editor_client.get(f"{API}/connectors"),
        editor_client.get(f"{API}/connectors/{pk}"),
        editor_client.patch(f"{API}/connectors/{pk}", {"name": "bb2"}, format="json"),
    ]
    for response in responses:
        assert response.status_code == 200
        assert SECRET not in response.content.decode()
        assert "secrets_encrypted" not in response.content.decode()


def test_update_without_secrets_keeps_them_and_with_secrets_replaces_them(
    token_connector, editor_client
):
    pk = token_connector.json()["id"]
    response = editor_client.patch(f"{API}/connectors/{pk}", {"base_url": ""}, format="json")
    assert response.status_code == 200
    assert response.json()["has_secrets"] is True
    assert Connector.objects.get(pk=pk).secrets == {"token": SECRET}
    response = editor_client.patch(
        f"{API}/connectors/{pk}", {"secrets": {"token": "rotated-value"}}, format="json"
    )
    assert response.status_code == 200
    assert "rotated-value" not in response.content.decode()
    assert Connector.objects.get(pk=pk).secrets == {"token": "rotated-value"}
    response = editor_client.patch(f"{API}/connectors/{pk}", {"secrets": {}}, format="json")
    assert response.status_code == 400  # the auth kind needs its token
    assert response.json()["error"]["details"] == {
        "secrets": ["token is required for API token (email + token)"]
    }
    assert Connector.objects.get(pk=pk).secrets == {"token": "rotated-value"}


def test_unknown_secret_for_the_auth_kind_is_a_field_error(token_provider, editor_client):
    response = editor_client.post(
        f"{API}/connectors",
        {
            "name": "bb",
            "provider": "fake_token",
            "auth_kind": "api_token",
            "secrets": {"password": "x"},
        },
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["name"] == "InputError"
    assert error["details"] == {"secrets": ["unknown secrets for api_token: password"]}
    assert not Connector.objects.exists()


def test_unknown_provider_and_auth_kind_are_refused(token_provider, editor_client):
    response = editor_client.post(
        f"{API}/connectors",
        {"name": "bb", "provider": "gitlab", "auth_kind": "api_token"},
        format="json",
    )
    assert response.status_code == 400
    assert "Unknown provider 'gitlab'" in response.json()["error"]["details"]["provider"][0]
    response = editor_client.post(
        f"{API}/connectors",
        {"name": "bb", "provider": "fake_token", "auth_kind": "oauth_consumer"},
        format="json",
    )
    assert response.status_code == 400
    assert "auth_kind" in response.json()["error"]["details"]


def test_duplicate_name_is_refused(token_connector, editor_client):
    response = editor_client.post(
        f"{API}/connectors",
        {
            "name": "bb",
            "provider": "fake_token",
            "auth_kind": "api_token",
            "config": {"email": "ops@example.com"},
            "secrets": {"token": "x"},
        },
        format="json",
    )
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert details == {"name": ["A connector named 'bb' already exists"]}


def test_provider_cannot_change(token_connector, editor_client):
    pk = token_connector.json()["id"]
    response = editor_client.patch(f"{API}/connectors/{pk}", {"provider": "fake"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "provider": ["The provider of a connector cannot change"]
    }


def test_delete_unused_connector(token_connector, editor_client):
    pk = token_connector.json()["id"]
    assert editor_client.delete(f"{API}/connectors/{pk}").status_code == 204
    assert editor_client.get(f"{API}/connectors/{pk}").status_code == 404


def test_deleting_a_connector_in_use_is_a_conflict(connector, make_integration, editor_client):
    make_integration()
    response = editor_client.delete(f"{API}/connectors/{connector.pk}")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["name"] == "ConflictError"
    assert error["message"] == (
        "Connector fake is used by acme: delete those integrations or move them to another "
        "connector first"
    )
    assert Connector.objects.filter(pk=connector.pk).exists()


def test_connector_list_is_paginated(connector, editor_client):
    body = editor_client.get(f"{API}/connectors", {"limit": 1}).json()
    assert body["count"] == 1
    assert [c["name"] for c in body["results"]] == ["fake"]


def test_changing_the_auth_kind_needs_secrets_of_the_new_kind(token_connector, editor_client):
    pk = token_connector.json()["id"]
    response = editor_client.patch(
        f"{API}/connectors/{pk}", {"auth_kind": "app_password"}, format="json"
    )
    assert response.status_code == 400
    assert "secrets" in response.json()["error"]["details"]
    assert Connector.objects.get(pk=pk).auth_kind == "api_token"
