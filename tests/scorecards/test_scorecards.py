"""Scorecards over the small world: scores, levels, filters, and the statements they take."""

import pytest
from django.core.exceptions import ValidationError

from scorecards import services
from scorecards.models import ScorecardResult
from tests.scorecards.conftest import NOW

pytestmark = pytest.mark.django_db

LEVELS = [
    {"name": "Bronze", "threshold": 50},
    {"name": "Silver", "threshold": 75},
    {"name": "Gold", "threshold": 90},
]


@pytest.fixture
def scorecard(small_world, django_capture_on_commit_callbacks):
    ids = [e.pk for e in small_world["entities"].values()]
    services.metrics_refresh(entity_ids=ids, now=NOW)
    owner = services.check_create(
        name="has an owner", rule={"path": "entity.spec.owner", "op": "exists"}
    )
    recent = services.check_create(
        name="a commit in the last 90 days",
        rule={"path": "metrics.days_since_last_commit.value", "op": "<", "value": 90},
        how_to_fix="Commit to the default branch.",
    )
    cycle = services.check_create(
        name="cycle time median under 3 days",
        rule={
            "path": "metrics.pr_cycle_time_median_days.last_30_days.value",
            "op": "<",
            "value": 3,
        },
    )
    with django_capture_on_commit_callbacks(execute=True):  # creating evaluates it
        return services.scorecard_create(
            name="Delivery",
            filter="kind=component",
            levels=LEVELS,
            checks=[
                {"check": owner, "weight": 2},
                {"check": recent, "weight": 1},
                {"check": cycle, "weight": 1},
            ],
        )


def _result(scorecard, entity) -> ScorecardResult:
    return ScorecardResult.objects.get(scorecard=scorecard, entity=entity)


def test_scores_and_levels_follow_the_weights(scorecard, small_world):
    entities = small_world["entities"]
    alpha = _result(scorecard, entities["alpha"])
    assert (alpha.score, alpha.level) == (100.0, "Gold")
    # loner: an owner (2 of 4), no commits, no cycle time.
    loner = _result(scorecard, entities["loner"])
    assert (loner.score, loner.level) == (50.0, "Bronze")
    statuses = {c["name"]: (c["status"], c["value"]) for c in loner.checks}
    assert statuses["a commit in the last 90 days"] == ("fail", None)
    # single: one merged PR, 2 days: the median exists though it is "too little data".
    single = _result(scorecard, entities["single"])
    assert single.score == 75.0 and single.level == "Silver"


def test_an_empty_repository_fails_the_metric_checks_with_no_value(scorecard, small_world):
    empty = _result(scorecard, small_world["entities"]["empty"])
    assert (empty.score, empty.level) == (50.0, "Bronze")
    by_name = {c["name"]: c for c in empty.checks}
    assert by_name["cycle time median under 3 days"]["status"] == "fail"
    assert "has no value" in by_name["cycle time median under 3 days"]["reason"]


def test_the_filter_selects_the_entities(scorecard, small_world):
    services.scorecard_update(scorecard=scorecard, filter="metadata.name=alpha")
    services.scorecard_results_refresh(scorecard_ids=[scorecard.pk])
    assert list(ScorecardResult.objects.values_list("entity__name", flat=True)) == ["alpha"]


def test_a_bad_filter_or_levels_are_refused_naming_the_field(small_world):
    with pytest.raises(ValidationError) as caught:
        services.scorecard_create(name="x", filter="kind=,=x")
    assert "filter" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        services.scorecard_create(name="y", levels=[{"name": "Gold"}])
    assert "levels[0]" in caught.value.message_dict["levels"][0]


def test_evaluating_many_entities_takes_statements_per_scorecard_not_per_check(
    scorecard, small_world, django_assert_max_num_queries, make_entities
):
    from tests.integrations.conftest import component_doc

    make_entities(*[component_doc(f"extra-{i}") for i in range(30)])
    # scorecards, entries, the filter's ids, entities, relations, metrics, savepoint,
    # delete, insert, release
    with django_assert_max_num_queries(10):
        written = services.scorecard_results_refresh()
    assert written == 34
