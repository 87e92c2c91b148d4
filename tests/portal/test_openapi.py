import yaml
from django.core.management import call_command
from openapi_spec_validator import validate


def test_schema_generates_without_warnings_and_validates(tmp_path, db):
    path = tmp_path / "schema.yaml"
    # --fail-on-warn turns any drf-spectacular warning into an error.
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    validate(schema)
    paths = schema["paths"]
    for expected in (
        "/api/catalog/entities",
        "/api/catalog/entities/by-query",
        "/api/catalog/entities/by-refs",
        "/api/catalog/entities/by-name/{kind}/{namespace}/{name}",
        "/api/catalog/entities/by-name/{kind}/{namespace}/{name}/ancestry",
        "/api/catalog/entities/by-uid/{uid}",
        "/api/catalog/entity-facets",
        "/api/catalog/refresh",
        "/api/catalog/validate-entity",
    ):
        assert expected in paths
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_schema_and_docs_are_served(client, db):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
