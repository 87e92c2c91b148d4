"""Each metric against values computed by hand on the small world (see conftest)."""

import pytest
from django.db import connection

from scorecards.models import EntityMetric
from scorecards.services import metrics_refresh
from tests.scorecards.conftest import NOW

pytestmark = pytest.mark.django_db


def _metrics(entity) -> dict[tuple[str, int], EntityMetric]:
    return {(m.metric, m.window_days): m for m in EntityMetric.objects.filter(entity=entity)}


def _check(metric: EntityMetric, value, n: int, status: str = "ok"):
    if value is None:
        assert metric.value is None
    else:
        assert metric.value == pytest.approx(value, abs=1e-6)
    assert (metric.n, metric.status) == (n, status), metric


def test_metrics_of_a_busy_repository_match_hand_computed_values(small_world):
    entity = small_world["entities"]["alpha"]
    metrics_refresh(entity_ids=[entity.pk], now=NOW)
    m = _metrics(entity)
    # 30 days: merged #1 (1 d), #2 (3 d), #4 (2 d, by closedDate); #3 merged 35 days ago.
    _check(m["pr_cycle_time_median_days", 30], 2.0, 3)
    _check(m["pr_cycle_time_p85_days", 30], 2.7, 3, "too little data")
    _check(m["merged_prs_per_week", 30], 3 / (30 / 7), 3)
    _check(m["declined_ratio", 30], 1 / 4, 4)
    # 90 days: cycles 1, 2, 3, 5.
    _check(m["pr_cycle_time_median_days", 90], 2.5, 4)
    _check(m["pr_cycle_time_p85_days", 90], 4.1, 4, "too little data")
    _check(m["merged_prs_per_week", 90], 4 / (90 / 7), 4)
    _check(m["declined_ratio", 90], 1 / 5, 5)
    _check(m["open_prs", 0], 2.0, 8)
    _check(m["oldest_open_pr_age_days", 0], 45.0, 2)
    _check(m["commits_per_week", 30], 3 / (30 / 7), 3)
    _check(m["commits_per_week", 90], 4 / (90 / 7), 4)
    _check(m["distinct_authors", 30], 2.0, 3)
    _check(m["distinct_authors", 90], 3.0, 4)
    _check(m["days_since_last_commit", 0], 1.0, 5)
    assert len(m) == 15


def test_an_empty_repository_says_too_little_data_instead_of_numbers(small_world):
    entity = small_world["entities"]["empty"]
    metrics_refresh(entity_ids=[entity.pk], now=NOW)
    m = _metrics(entity)
    assert len(m) == 15
    assert {metric.status for metric in m.values()} == {"too little data"}
    _check(m["pr_cycle_time_median_days", 90], None, 0, "too little data")
    _check(m["merged_prs_per_week", 30], 0.0, 0, "too little data")
    _check(m["days_since_last_commit", 0], None, 0, "too little data")
    _check(m["oldest_open_pr_age_days", 0], None, 0, "too little data")


def test_a_one_pull_request_repository(small_world):
    entity = small_world["entities"]["single"]
    metrics_refresh(entity_ids=[entity.pk], now=NOW)
    m = _metrics(entity)
    _check(m["pr_cycle_time_median_days", 30], 2.0, 1, "too little data")
    _check(m["pr_cycle_time_p85_days", 30], 2.0, 1, "too little data")
    _check(m["merged_prs_per_week", 30], 7 / 30, 1)
    _check(m["declined_ratio", 30], 0.0, 1, "too little data")
    _check(m["open_prs", 0], 0.0, 1)
    _check(m["oldest_open_pr_age_days", 0], None, 0)  # none open: nothing to age
    _check(m["commits_per_week", 30], 0.0, 0, "too little data")


def test_an_entity_without_a_repository_has_no_metrics(small_world):
    entity = small_world["entities"]["loner"]
    assert metrics_refresh(entity_ids=[entity.pk], now=NOW) == 0
    assert not EntityMetric.objects.filter(entity=entity).exists()


def test_the_python_fallback_computes_what_the_sql_computes(small_world):
    """The SQLite fallback, run here against the same rows, agrees with PostgreSQL's SQL."""
    from scorecards import metrics

    ids = [e.pk for e in small_world["entities"].values()]
    if connection.vendor != "postgresql":
        pytest.skip("compares with the PostgreSQL aggregates")
    sql = metrics._aggregates_sql(ids, NOW)
    python = metrics._aggregates_python(ids, NOW)
    assert python.linked == sql.linked
    assert python.pr_totals == sql.pr_totals
    assert python.commits == sql.commits
    assert python.commit_totals == sql.commit_totals
    assert python.prs.keys() == sql.prs.keys()
    for key, row in sql.prs.items():
        assert python.prs[key] == pytest.approx(row), key


def test_recomputing_a_set_of_entities_takes_a_fixed_number_of_statements(
    small_world, django_assert_max_num_queries
):
    ids = [e.pk for e in small_world["entities"].values()]
    # linked, 4 aggregates, savepoint + delete + insert + release; then results (no scorecard: 1)
    with django_assert_max_num_queries(12):
        metrics_refresh(entity_ids=ids, now=NOW)
    assert EntityMetric.objects.count() == 45
