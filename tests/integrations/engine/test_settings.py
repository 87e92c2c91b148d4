"""Integration settings the engine depends on: JMESPath validation and frozen secondary kinds."""

import pytest
from django.core.exceptions import ValidationError

from integrations import services


def _errors(excinfo) -> dict[str, list[str]]:
    return excinfo.value.message_dict


def test_create_refuses_an_invalid_ingested_path_with_the_parsers_message(connector):
    rules = [{"ingested": "name[", "catalog": "metadata.name"}]
    with pytest.raises(ValidationError) as excinfo:
        services.integration_create(connector=connector, name="bad", correlation=rules)
    (message,) = _errors(excinfo)["correlation[0].ingested"]
    assert "Incomplete expression" in message
    assert "name[" in message


def test_create_refuses_an_invalid_catalog_path_with_the_parsers_message(connector):
    rules = [
        {"ingested": "name", "catalog": "metadata.name"},
        {"ingested": "slug", "catalog": "metadata..annotations", "operator": "contains"},
    ]
    with pytest.raises(ValidationError) as excinfo:
        services.integration_create(connector=connector, name="bad", correlation=rules)
    (message,) = _errors(excinfo)["correlation[1].catalog"]
    assert "Parse error at column 9" in message


def test_create_refuses_an_invalid_field_mapping_expression(connector):
    with pytest.raises(ValidationError) as excinfo:
        services.integration_create(
            connector=connector,
            name="bad",
            field_mappings={"metadata.description": "links.[?"},
        )
    (message,) = _errors(excinfo)["field_mappings.metadata.description"]
    assert "Invalid JMESPath expression" in message


def test_create_refuses_an_unknown_operator(connector):
    rules = [{"ingested": "name", "catalog": "metadata.name", "operator": "like"}]
    with pytest.raises(ValidationError) as excinfo:
        services.integration_create(connector=connector, name="bad", correlation=rules)
    assert "correlation[0].operator" in _errors(excinfo)


def test_create_accepts_a_quoted_identifier_with_dots_and_slashes(connector):
    rule = {"ingested": "slug", "catalog": 'metadata.annotations."fake.example/slug"'}
    integration = services.integration_create(connector=connector, name="ok", correlation=[rule])
    (stored,) = integration.correlation_rules.all()
    assert stored.catalog_path == 'metadata.annotations."fake.example/slug"'


def test_update_refuses_an_invalid_path_and_keeps_the_previous_rules(make_integration):
    integration = make_integration()
    with pytest.raises(ValidationError) as excinfo:
        services.integration_update(
            integration=integration,
            correlation=[{"ingested": "slug", "catalog": "metadata.tags[?"}],
        )
    (message,) = _errors(excinfo)["correlation[0].catalog"]
    assert "Incomplete expression" in message
    assert [(r.ingested_path, r.catalog_path) for r in integration.correlation_rules.all()] == [
        ("name", "metadata.name")
    ]


def test_secondary_kinds_are_frozen_after_creation(make_integration):
    integration = make_integration(secondary_kinds=["pull_requests", "commits"])
    for changed in (["commits"], [], ["pull_requests", "commits", "commits"]):
        with pytest.raises(ValidationError) as excinfo:
            services.integration_update(integration=integration, secondary_kinds=changed)
        assert "secondary_kinds" in _errors(excinfo)
    integration.refresh_from_db()
    assert sorted(integration.secondary_kinds) == ["commits", "pull_requests"]


def test_secondary_kinds_update_with_the_same_list_is_accepted(make_integration):
    integration = make_integration(secondary_kinds=["pull_requests", "commits"])
    services.integration_update(
        integration=integration, secondary_kinds=["commits", "pull_requests"], description="x"
    )
    integration.refresh_from_db()
    assert integration.description == "x"
    assert sorted(integration.secondary_kinds) == ["commits", "pull_requests"]
