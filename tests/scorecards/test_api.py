"""The scorecards API: a bad rule refused with the part named, an entity's results readable by
its readers, the list's level distribution."""

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from scorecards import services
from tests.scorecards.conftest import NOW

pytestmark = pytest.mark.django_db


def _client(*perms: str) -> APIClient:
    user = User.objects.create_user(f"u{len(perms)}", password="x")
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_bad_rule_is_refused_through_the_api_naming_the_part():
    response = _client("add_check").post(
        "/api/scorecards/checks/",
        {"name": "x", "rule": {"path": "metrics.nope.value", "op": "<", "value": 1}},
        format="json",
    )
    assert response.status_code == 400
    assert "unknown metric 'nope'" in str(response.json())


def test_an_entity_shows_its_metrics_and_results(small_world, django_capture_on_commit_callbacks):
    alpha = small_world["entities"]["alpha"]
    services.metrics_refresh(entity_ids=[alpha.pk], now=NOW)
    check = services.check_create(name="owner", rule={"path": "entity.spec.owner", "op": "exists"})
    with django_capture_on_commit_callbacks(execute=True):
        services.scorecard_create(
            name="Basics", levels=[{"name": "Gold", "threshold": 90}], checks=[{"check": check}]
        )
    client = _client()
    body = client.get(f"/api/scorecards/entities/component/default/{alpha.name}").json()
    assert body["metrics"]["open_prs"]["windows"]["0"]["value"] == 2.0
    (result,) = body["scorecards"]
    assert (result["scorecard_name"], result["score"], result["level"]) == ("Basics", 100.0, "Gold")
    listed = client.get("/api/scorecards/").json()
    assert listed[0]["distribution"] == {"Gold": 4}
    assert client.get("/api/scorecards/entities/component/default/nothing").status_code == 404
    assert APIClient().get("/api/scorecards/").status_code == 401


def test_the_entity_endpoint_takes_a_fixed_number_of_statements(
    small_world, django_assert_num_queries
):
    alpha = small_world["entities"]["alpha"]
    services.metrics_refresh(entity_ids=[alpha.pk], now=NOW)
    client = _client()
    # the user's scopes and the entity (what any entity read takes), then what scorecards add:
    # its metrics, its results (with their scorecards joined) and whether a recompute is owed
    with django_assert_num_queries(5):
        response = client.get(f"/api/scorecards/entities/component/default/{alpha.name}")
    assert response.status_code == 200


def test_changing_a_scorecard_through_the_api_refuses_bad_levels_naming_the_field():
    client = _client("add_scorecard", "change_scorecard")
    created = client.post("/api/scorecards/", {"name": "Basics"}, format="json")
    assert created.status_code == 201, created.content
    response = client.patch(
        f"/api/scorecards/{created.json()['id']}",
        {"levels": [{"name": "Gold", "threshold": "high"}]},
        format="json",
    )
    assert response.status_code == 400
    assert "levels[0].threshold: must be a number from 0 to 100" in str(response.json())
