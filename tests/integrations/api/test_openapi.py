import json

import pytest
import yaml
from django.core.management import call_command

from integrations.providers import registry
from tests.integrations.fake_provider import FakeProvider


def test_integrations_api_is_documented_without_warnings_and_without_secrets(tmp_path, db):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    paths = schema["paths"]
    expected = {
        "/api/integrations/": {"get", "post"},
        "/api/integrations/{id}": {"get", "patch", "delete"},
        "/api/integrations/{id}/sync": {"post"},
        "/api/integrations/{id}/suspend": {"post"},
        "/api/integrations/{id}/resume": {"post"},
        "/api/integrations/{id}/discovered": {"get"},
        "/api/integrations/{id}/import": {"post"},
        "/api/integrations/{id}/imported": {"get"},
        "/api/integrations/{id}/imported/{imported_pk}/unlink": {"post"},
        "/api/integrations/{id}/runs": {"get"},
        "/api/integrations/connectors": {"get", "post"},
        "/api/integrations/connectors/{id}": {"get", "patch", "delete"},
    }
    for url, methods in expected.items():
        assert set(paths[url]) >= methods, url
    components = schema["components"]["schemas"]
    assert "secrets" not in components["Connector"]["properties"]
    assert "has_secrets" in components["Connector"]["properties"]
    assert "secrets" in components["ConnectorCreateRequest"]["properties"]
    assert not {"webhook_secret", "webhook_secret_encrypted"} & set(
        components["Integration"]["properties"]
    )


def test_full_sync_processing_errors_and_source_gone_are_documented(tmp_path, db):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    components = schema["components"]["schemas"]
    sync = schema["paths"]["/api/integrations/{id}/sync"]["post"]
    body = sync["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert components[body]["properties"]["full"]["type"] == "boolean"
    assert {"202", "400", "409"} <= set(sync["responses"])
    assert set(components["SyncQueued"]["properties"]) == {"queued", "full", "detail"}
    discovered = components["DiscoveredEntity"]["properties"]
    assert {"processing_errors", "needs_attention", "error_since", "name_holder"} <= set(discovered)
    assert set(components["ProcessingError"]["properties"]) == {
        "stage",
        "message",
        "reason",
        "hint",
        "since",
        "at",
        "run_id",
    }
    states = next(
        p["schema"]["enum"]
        for p in schema["paths"]["/api/integrations/{id}/discovered"]["get"]["parameters"]
        if p["name"] == "state"
    )
    assert "error" in states
    assert {"errors", "error_summary", "unchanged"} <= set(components["SyncRun"]["properties"])
    assert set(components["ErrorGroup"]["properties"]) == {
        "stage",
        "reason",
        "hint",
        "count",
        "examples",
    }
    assert "source_gone_since" in components["ImportedEntity"]["properties"]


@pytest.mark.django_db
def test_the_auth_kind_enum_follows_the_registry_after_the_schema_was_built_once(client):
    def auth_kinds() -> list[str]:
        schema = json.loads(client.get("/api/schema/?format=json").content)
        return schema["components"]["schemas"]["AuthKindEnum"]["enum"]

    before = auth_kinds()
    registry.register(FakeProvider)
    try:
        assert auth_kinds() == [*before, "none"]
    finally:
        registry.unregister(FakeProvider.key)
    assert auth_kinds() == before
