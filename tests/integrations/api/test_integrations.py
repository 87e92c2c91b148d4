"""Integrations: create, read, PATCH, delete, and the validation the services apply."""

from datetime import timedelta

import jmespath
import pytest
from django.test import override_settings
from django.utils import timezone
from jmespath.exceptions import JMESPathError

from catalog.models import Entity
from integrations.models import Integration
from tests.integrations.api.conftest import API


@pytest.fixture
def created(connector, editor_client):
    response = editor_client.post(
        f"{API}/",
        {
            "name": "acme",
            "connector": connector.pk,
            "description": "The *acme* workspace",
            "labels": ["team-a"],
            "target": {"workspace": "acme"},
            "update_frequency": "1h",
            "correlation": [{"ingested": "slug", "catalog": "metadata.name"}],
            "field_mappings": {"metadata.description": "description"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_applies_defaults_and_answers_the_whole_integration(created, connector):
    integration = Integration.objects.get(pk=created["id"])
    assert created == {
        **created,
        "name": "acme",
        "description": "The *acme* workspace",
        "labels": ["team-a"],
        "scope": None,
        "connector": connector.pk,
        "provider": "fake",
        "target": {"workspace": "acme"},
        "registration": "register_and_merge",
        "entity_kind": "Component",
        "entity_type": "service",
        "secondary_kinds": ["pull_requests", "commits"],
        "update_frequency": 60,
        "auto_import": False,
        "state": "enabled",
        "correlation": [{"ingested": "slug", "catalog": "metadata.name", "operator": "equals"}],
        "field_mappings": {"metadata.description": "description"},
        "last_sync_at": None,
        "webhook_url": f"http://127.0.0.1:8000/webhooks/fake/{integration.pk}",
        "counts": {"discovered": 0, "imported": 0},
    }
    assert created["next_sync_at"] is not None
    assert integration.webhook_secret
    assert "webhook_secret" not in created and "webhook_secret_encrypted" not in created


@override_settings(LANTERN_PUBLIC_URL="https://lantern.example.com/")
def test_webhook_url_dashes_the_provider(token_provider, make_integration, editor_client):
    from integrations import services

    connector = services.connector_create(
        name="tok",
        provider="fake_token",
        auth_kind="api_token",
        config={"world": "x", "email": "ops@example.com"},
        secrets={"token": "x"},
    )
    integration = services.integration_create(connector=connector, name="tok")
    body = editor_client.get(f"{API}/{integration.pk}").json()
    assert (
        body["webhook_url"] == f"https://lantern.example.com/webhooks/fake-token/{integration.pk}"
    )


def test_webhook_secret_never_appears(created, editor_client):
    secret = Integration.objects.get(pk=created["id"]).webhook_secret
    for url in (f"{API}/", f"{API}/{created['id']}"):
        assert secret not in editor_client.get(url).content.decode()


def test_provider_defaults_fill_field_mappings_when_none_given(connector, editor_client):
    response = editor_client.post(
        f"{API}/", {"name": "acme", "connector": connector.pk}, format="json"
    )
    assert response.json()["field_mappings"] == {
        "metadata.description": "description",
        'metadata.annotations."fake.example/repo-url"': "links.html.href",
    }
    assert response.json()["correlation"] == [
        {"ingested": "name", "catalog": "metadata.name", "operator": "equals"}
    ]


def test_update_frequency_accepts_minutes(connector, editor_client):
    response = editor_client.post(
        f"{API}/",
        {"name": "acme", "connector": connector.pk, "update_frequency": 720},
        format="json",
    )
    assert response.json()["update_frequency"] == 720


@pytest.mark.parametrize("value", ["2h", 45, "soon"])
def test_unknown_update_frequency_is_refused(connector, editor_client, value):
    response = editor_client.post(
        f"{API}/",
        {"name": "acme", "connector": connector.pk, "update_frequency": value},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "update_frequency": ["must be one of 15m, 30m, 1h, 3h, 6h, 12h, 24h"]
    }


def test_invalid_jmespath_is_refused_with_the_parsers_message(connector, editor_client):
    response = editor_client.post(
        f"{API}/",
        {"name": "acme", "connector": connector.pk, "field_mappings": {"metadata.title": "name["}},
        format="json",
    )
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    (message,) = details["field_mappings.metadata.title"]
    assert message.startswith("Invalid JMESPath expression 'name[': ")
    with pytest.raises(JMESPathError) as parser:
        jmespath.compile("name[")
    assert str(parser.value) in message  # the parser's own words
    response = editor_client.post(
        f"{API}/",
        {
            "name": "acme",
            "connector": connector.pk,
            "correlation": [{"ingested": "name", "catalog": "metadata..name"}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert "correlation[0].catalog" in response.json()["error"]["details"]
    assert not Integration.objects.exists()


def test_type_is_refused_when_the_integration_only_merges(connector, editor_client):
    response = editor_client.post(
        f"{API}/",
        {
            "name": "acme",
            "connector": connector.pk,
            "registration": "merge",
            "entity_type": "website",
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "entity_type": ["The type is not configurable when the integration only merges"]
    }


def test_merge_only_integration_has_no_type(connector, editor_client):
    response = editor_client.post(
        f"{API}/",
        {"name": "acme", "connector": connector.pk, "registration": "merge"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["entity_type"] == ""
    response = editor_client.patch(
        f"{API}/{response.json()['id']}", {"entity_type": "library"}, format="json"
    )
    assert response.status_code == 400
    assert "entity_type" in response.json()["error"]["details"]


def test_secondary_kinds_are_locked_after_creation(created, editor_client):
    response = editor_client.patch(
        f"{API}/{created['id']}", {"secondary_kinds": ["commits"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {
        "secondary_kinds": ["Secondary kinds are locked after creation"]
    }
    # The same set (in any order) is not a change.
    response = editor_client.patch(
        f"{API}/{created['id']}", {"secondary_kinds": ["commits", "pull_requests"]}, format="json"
    )
    assert response.status_code == 200


def test_unknown_secondary_kind_is_a_field_error(connector, editor_client):
    response = editor_client.post(
        f"{API}/",
        {"name": "acme", "connector": connector.pk, "secondary_kinds": ["issues"]},
        format="json",
    )
    assert response.status_code == 400
    assert "secondary_kinds" in response.json()["error"]["details"]


def test_unknown_target_key_and_duplicate_name_are_refused(created, connector, editor_client):
    response = editor_client.post(
        f"{API}/", {"name": "acme", "connector": connector.pk}, format="json"
    )
    assert response.json()["error"]["details"] == {
        "name": ["An integration named 'acme' already exists"]
    }
    response = editor_client.post(
        f"{API}/",
        {"name": "other", "connector": connector.pk, "target": {"repo": "x"}},
        format="json",
    )
    assert response.json()["error"]["details"] == {
        "target.repo": ["unknown setting for this provider"]
    }


def test_missing_name_and_unknown_connector(editor_client, db):
    response = editor_client.post(f"{API}/", {"connector": 999}, format="json")
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert set(details) == {"name", "connector"}


def test_patch_changes_only_what_is_given(created, editor_client):
    response = editor_client.patch(
        f"{API}/{created['id']}",
        {
            "description": "new",
            "update_frequency": "24h",
            "auto_import": True,
            "field_mappings": {"metadata.title": "name"},
        },
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["description"] == "new"
    assert body["update_frequency"] == 1440
    assert body["auto_import"] is True
    assert body["field_mappings"] == {"metadata.title": "name"}
    assert body["labels"] == ["team-a"]
    assert body["correlation"] == created["correlation"]


def test_patch_state_suspends_and_resumes(created, editor_client):
    url = f"{API}/{created['id']}"
    assert editor_client.patch(url, {"state": "suspended"}, format="json").json()["state"] == (
        "suspended"
    )
    Integration.objects.filter(pk=created["id"]).update(next_sync_at=None)
    body = editor_client.patch(url, {"state": "enabled"}, format="json").json()
    assert body["state"] == "enabled"
    assert body["next_sync_at"] is not None  # resuming schedules a sync


def test_delete_keeps_catalog_entities(synced, editor_client):
    integration = synced["integration"]
    response = editor_client.post(
        f"{API}/{integration.pk}/import",
        {"discovered_id": synced["discovered"]["billing"].pk},
        format="json",
    )
    assert response.status_code == 200
    assert editor_client.delete(f"{API}/{integration.pk}").status_code == 204
    assert not Integration.objects.filter(pk=integration.pk).exists()
    billing = Entity.objects.get(name="billing")
    assert billing.integration_links == []


def test_list_and_retrieve_carry_counts(synced, reader_client):
    integration = synced["integration"]
    body = reader_client.get(f"{API}/").json()
    assert body["count"] == 1
    assert body["results"][0]["counts"] == {"discovered": 3, "imported": 0}
    assert reader_client.get(f"{API}/{integration.pk}").json()["counts"] == {
        "discovered": 3,
        "imported": 0,
    }
    assert reader_client.get(f"{API}/999999").status_code == 404


def test_explicit_empty_field_mappings_are_kept(connector, editor_client):
    response = editor_client.post(
        f"{API}/", {"name": "acme", "connector": connector.pk, "field_mappings": {}}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["field_mappings"] == {}


def test_a_start_date_in_the_future_is_refused_and_nothing_changes(created, editor_client):
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    response = editor_client.patch(
        f"{API}/{created['id']}", {"start_date": tomorrow}, format="json"
    )
    assert response.status_code == 400
    (message,) = response.json()["error"]["details"]["start_date"]
    assert message.startswith(f"{tomorrow} is in the future: nothing would be ingested")
    assert Integration.objects.get(pk=created["id"]).start_date is None
    today = timezone.localdate().isoformat()
    response = editor_client.patch(f"{API}/{created['id']}", {"start_date": today}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["start_date"] == today
