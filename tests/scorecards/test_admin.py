"""The scorecards admin refuses what the services refuse, with the same messages, and saving a
scorecard evaluates it."""

import json

import pytest

from scorecards.models import Check, Scorecard, ScorecardResult

pytestmark = pytest.mark.django_db


def _inline(prefix: str = "entries", **rows) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
        **{
            f"{prefix}-{i}-{field}": value
            for i, row in enumerate(rows.values())
            for field, value in row.items()
        },
    }


def test_a_check_with_a_bad_rule_is_refused_in_the_admin_naming_the_part(admin_client):
    rule = {"path": "metrics.nope.value", "op": "<", "value": 1}
    response = admin_client.post(
        "/admin/scorecards/check/add/", {"name": "bad", "rule": json.dumps(rule)}
    )
    assert response.status_code == 200
    assert "unknown metric &#x27;nope&#x27;" in response.content.decode()
    assert not Check.objects.exists()


def test_a_scorecard_with_bad_levels_is_refused_in_the_admin(admin_client):
    response = admin_client.post(
        "/admin/scorecards/scorecard/add/",
        {
            "name": "x",
            "filter": "",
            "levels": json.dumps([{"name": "Gold", "threshold": 200}]),
            **_inline(),
        },
    )
    assert response.status_code == 200
    assert "levels[0].threshold: must be a number from 0 to 100" in response.content.decode()
    assert not Scorecard.objects.exists()


def test_saving_a_scorecard_in_the_admin_evaluates_it(
    admin_client, small_world, django_capture_on_commit_callbacks
):
    check = Check.objects.create(name="owner", rule={"path": "entity.spec.owner", "op": "exists"})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/scorecards/scorecard/add/",
            {
                "name": "Basics",
                "filter": "kind=component",
                "levels": json.dumps([{"name": "Gold", "threshold": 90}]),
                **_inline(a={"check_item": str(check.pk), "weight": "1"}),
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ScorecardResult.objects.filter(scorecard__name="Basics", level="Gold").count() == 4


def test_the_admin_pages_render(admin_client):
    for url in (
        "/admin/scorecards/check/",
        "/admin/scorecards/scorecard/",
        "/admin/scorecards/scorecard/add/",
    ):
        assert admin_client.get(url).status_code == 200
