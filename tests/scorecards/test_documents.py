"""Entity documents carry the Lantern-only ``scorecards`` and ``metrics`` sections: on the
single-entity reads and the YAML tab, in lists only when ``fields`` asks, one query per section
whatever the page size, and never in what is exported, written back or re-imported."""

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.rendering import source_document
from catalog.selectors import DocumentSection, document_section_register
from catalog.services import entities_upsert
from integrations.engine.writeback import catalog_file_document
from scorecards import services
from tests.scorecards.conftest import NOW

pytestmark = pytest.mark.django_db

API = "/api/catalog"


@pytest.fixture
def scored(small_world, django_capture_on_commit_callbacks):
    """Metrics of every entity, and one scorecard: ``owner`` (weight 2) passes everywhere,
    ``quick`` (weight 1, p85 cycle time < 3 days) fails for alpha: 2 of 3, Bronze."""
    entities = small_world["entities"]
    services.metrics_refresh(entity_ids=[e.pk for e in entities.values()], now=NOW)
    owner = services.check_create(name="owner", rule={"path": "entity.spec.owner", "op": "exists"})
    quick = services.check_create(
        name="quick", rule={"path": "metrics.pr_cycle_time_p85_days.value", "op": "<", "value": 3}
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.scorecard_create(
            name="Basics",
            levels=[{"name": "Bronze", "threshold": 50}, {"name": "Gold", "threshold": 90}],
            checks=[{"check": owner, "weight": 2}, {"check": quick}],
        )
    return entities


def expected_scorecards(entity) -> list[dict]:
    """alpha's: merged in 90 days after 1, 2, 3 and 5 days; the 85th percentile (interpolated)
    is 3 + 0.55 × 2 = 4.1 (kept, though four is too little data)."""
    return [
        {
            "name": "Basics",
            "score": 66.67,
            "level": "Bronze",
            "checks": [
                {
                    "name": "owner",
                    "weight": 2,
                    "status": "pass",
                    "value": entity.owner,
                    "reason": "",
                },
                {
                    "name": "quick",
                    "weight": 1,
                    "status": "fail",
                    "value": 4.1,
                    "reason": "metrics.pr_cycle_time_p85_days.value is 4.1, not < 3",
                },
            ],
        }
    ]


@pytest.fixture
def client_of(bearer_client, make_user):
    return bearer_client(make_user("reader"))


def test_the_by_name_read_carries_the_entity_scorecards_and_metrics(scored, client_of):
    alpha = scored["alpha"]
    body = client_of.get(f"{API}/entities/by-name/component/default/alpha").json()
    assert body["scorecards"] == expected_scorecards(alpha)
    assert body["metrics"]["open_prs"] == {
        "unit": "pull requests",
        "windows": {"0": {"value": 2.0, "n": 8, "status": "ok"}},
    }
    # commits by Ann, Bob, Ann in the last 30 days; Cy 50 days ago; Dee 100 days ago
    windows = body["metrics"]["distinct_authors"]["windows"]
    assert (windows["30"]["value"], windows["90"]["value"]) == (2.0, 3.0)
    assert set(body) == {
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "relations",
        "integration_properties",
        "scorecards",
        "metrics",
    }
    assert "scorecards" not in body["metadata"] and "scorecards" not in body["spec"]


def test_the_by_uid_read_carries_them_in_json_and_yaml(scored, client_of):
    alpha = scored["alpha"]
    assert client_of.get(f"{API}/entities/by-uid/{alpha.uid}").json()["scorecards"] == (
        expected_scorecards(alpha)
    )
    response = client_of.get(f"{API}/entities/by-uid/{alpha.uid}", {"format": "yaml"})
    document = yaml.safe_load(response.content)
    assert document["scorecards"] == expected_scorecards(alpha)
    assert document["metrics"]["open_prs"]["windows"]["0"]["n"] == 8


def test_an_entity_with_no_results_or_metrics_has_neither_section(small_world, client_of):
    body = client_of.get(f"{API}/entities/by-name/component/default/loner").json()
    assert "scorecards" not in body and "metrics" not in body


def test_a_single_entity_read_costs_one_statement_more_per_section(
    scored, client_of, django_assert_num_queries
):
    # the token (read, and its first use written), the user's scopes, the entity, its
    # relations; then the results and the metrics
    with django_assert_num_queries(7):
        client_of.get(f"{API}/entities/by-name/component/default/alpha")


def test_lists_carry_the_sections_only_when_fields_ask_for_them(scored, client_of):
    plain = client_of.get(f"{API}/entities", {"filter": "metadata.name=alpha"}).json()
    assert "scorecards" not in plain[0] and "metrics" not in plain[0]
    asked = client_of.get(
        f"{API}/entities/by-query",
        {"filter": "metadata.name=alpha", "fields": "metadata.name,scorecards"},
    ).json()
    assert asked["items"] == [
        {"metadata": {"name": "alpha"}, "scorecards": expected_scorecards(scored["alpha"])}
    ]


def test_a_list_asking_for_a_section_costs_one_statement_more_whatever_its_size(scored, client_of):
    def statements(limit: int, fields: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client_of.get(f"{API}/entities", {"limit": limit, "fields": fields})
        assert len(response.json()) == limit
        return len(captured)

    client_of.get(f"{API}/entities")  # the token's first use is written once
    plain = statements(1, "metadata.name")
    assert statements(4, "metadata.name") == plain
    assert statements(1, "metadata.name,scorecards") == plain + 1
    assert statements(4, "metadata.name,scorecards,metrics") == plain + 2


def test_the_yaml_tab_and_download_show_the_sections(scored, client):
    client.force_login(get_user_model().objects.create_user("ada", password="pw-unused-123"))
    page = client.get("/catalog/default/component/alpha/yaml").content.decode()
    assert "scorecards:" in page and "level: Bronze" in page
    download = client.get("/catalog/default/component/alpha/yaml/download")
    document = yaml.safe_load(download.content)
    assert document["scorecards"] == expected_scorecards(scored["alpha"])
    assert document["metrics"]["open_prs"]["windows"]["0"]["value"] == 2.0


def test_exported_written_back_and_reimported_documents_leave_the_sections_out(scored, client_of):
    alpha = scored["alpha"]
    for document in (source_document(alpha), catalog_file_document(alpha)):
        assert "scorecards" not in document and "metrics" not in document
    downloaded = client_of.get(f"{API}/entities/by-name/component/default/alpha").json()
    assert "scorecards" in downloaded
    result = entities_upsert(documents=[downloaded])
    assert (result.created, result.updated, result.unchanged) == (0, 0, 1)


def test_the_openapi_schema_documents_the_sections(client_of):
    schema = yaml.safe_load(client_of.get("/api/schema/").content)
    entity = schema["components"]["schemas"]["Entity"]["properties"]
    assert entity["scorecards"]["items"]["$ref"].endswith("/DocumentScorecard")
    assert "scorecards" not in schema["components"]["schemas"]["Entity"].get("required", [])
    scorecard = schema["components"]["schemas"]["DocumentScorecard"]["properties"]
    assert set(scorecard) == {"name", "score", "level", "checks"}
    window = schema["components"]["schemas"]["DocumentMetricWindow"]["properties"]
    status_schema = schema["components"]["schemas"][window["status"]["$ref"].rsplit("/", 1)[1]]
    assert status_schema["enum"] == ["ok", "too little data"]


@pytest.mark.parametrize("key", ["metadata", "scorecards"])
def test_a_section_key_already_used_is_refused(key):
    with pytest.raises(ValueError, match=f"already have a '{key}' section"):
        document_section_register(DocumentSection(key, lambda entities: {}, lambda: None))
