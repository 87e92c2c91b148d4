"""Scorecards evaluated in the database give what the Python evaluator gives: every entity's
score, level and each check's status, value and reason, over rules that find missing values,
values of the wrong type, 30-day metrics and combinations."""

import pytest
from django.db import connection

from catalog.models import Entity
from scorecards import services
from scorecards.compiler import NotCompilable, ScorecardCompiler
from scorecards.models import ScorecardResult
from tests.integrations.conftest import component_doc
from tests.scorecards.conftest import NOW

pytestmark = pytest.mark.django_db

RULES = [
    {"path": "entity.spec.owner", "op": "exists"},
    {"path": "entity.metadata.title", "op": "exists"},
    {"path": "entity.metadata.tags", "op": "exists"},
    {"path": "entity.metadata.labels.team", "op": "exists"},
    {"path": 'entity.metadata.annotations."example.com/repo"', "op": "exists"},
    {"path": "entity.metadata.tier", "op": "exists"},  # an extra metadata key
    {"path": "properties.Fake", "op": "exists"},
    {"path": "entity.kind", "op": "==", "value": "Component"},
    {"path": "entity.apiVersion", "op": "!=", "value": "backstage.io/v1alpha1"},
    {"path": "entity.spec.lifecycle", "op": "==", "value": "production"},
    {"path": "entity.spec.replicas", "op": "==", "value": 3},  # 3, 3.0, "3"
    {"path": "entity.spec.public", "op": "==", "value": 1},  # true is not 1
    {"path": "entity.spec.public", "op": "==", "value": True},
    {"path": "entity.spec.system", "op": "==", "value": None},
    {"path": "entity.metadata.labels", "op": "==", "value": {"team": "a", "tier": "1"}},
    {"path": "entity.spec.ports", "op": "==", "value": [80, 443]},
    {"path": "metrics.open_prs.value", "op": "==", "value": 2},
    {"path": "metrics.open_prs.status", "op": "==", "value": "ok"},
    {"path": "metrics.pr_cycle_time_p85_days.value", "op": "<", "value": 3},
    {"path": "metrics.pr_cycle_time_median_days.last_30_days.value", "op": "<", "value": 3},
    {"path": "metrics.merged_prs_per_week.last_30_days.value", "op": ">=", "value": 0.5},
    {"path": "metrics.declined_ratio.value", "op": "<=", "value": 0.25},
    {"path": "metrics.open_prs.n", "op": ">", "value": 2},
    {"path": "metrics.days_since_last_commit.value", "op": "<", "value": 14},
    {"path": "metrics.open_prs.last_30_days.value", "op": "<", "value": 1},  # no such window
    {"path": "metrics.distinct_authors.window_days", "op": "==", "value": 90},
    {"path": "entity.spec.replicas", "op": "<=", "value": 2.5},  # "3" is not a number
    {"path": "entity.spec.public", "op": ">", "value": 0},  # nor is true
    {"path": "entity.metadata.name", "op": ">", "value": 1},
    {"path": "entity.spec.lifecycle", "op": "in", "value": ["production", "experimental"]},
    {"path": "entity.spec.replicas", "op": "in", "value": [1, 3]},
    {"path": "entity.spec.missing", "op": "in", "value": [None]},
    {"path": "metrics.declined_ratio.status", "op": "in", "value": ["too little data"]},
    {"path": "entity.metadata.tags", "op": "contains", "value": "java"},
    {"path": "entity.metadata.description", "op": "contains", "value": "service"},
    {"path": "entity.spec.ports", "op": "contains", "value": 80},
    {"path": "entity.spec.replicas", "op": "contains", "value": 3},  # a number: error
    {"path": "entity.metadata.title", "op": "contains", "value": 1},  # a string, not "1"
    {"path": "entity.spec.missing", "op": "contains", "value": "x"},
    {"path": "entity.spec.flags", "op": "contains", "value": True},  # [1] holds no true
    {
        "all": [
            {"path": "entity.spec.owner", "op": "exists"},
            {"path": "metrics.open_prs.value", "op": "<=", "value": 3},
            {"path": "entity.spec.replicas", "op": "<", "value": 10},
        ]
    },
    {
        "any": [
            {"path": "metrics.open_prs.value", "op": "==", "value": 0},
            {"path": "metrics.oldest_open_pr_age_days.value", "op": "<", "value": 30},
            {"path": "entity.metadata.name", "op": "<", "value": 3},
        ]
    },
    {"not": {"path": "entity.metadata.tags", "op": "contains", "value": "java"}},
    {"not": {"path": "entity.metadata.name", "op": ">", "value": 1}},
    {
        "all": [
            {"not": {"any": [{"path": "entity.spec.missing", "op": "exists"}]}},
            {
                "any": [
                    {"path": "metrics.commits_per_week.last_30_days.n", "op": ">=", "value": 3},
                    {"not": {"path": "entity.spec.lifecycle", "op": "==", "value": "production"}},
                ]
            },
        ]
    },
]


@pytest.fixture
def catalog(small_world, make_entities):
    """The small world (pull requests, commits, no repository) and entities whose documents
    hold every kind of value the rules look for, including the wrong ones."""
    make_entities(
        component_doc(
            "typed",
            metadata={
                "title": "Typed service",
                "description": "A service with typed fields",
                "tags": ["java", "grpc"],
                "labels": {"team": "a", "tier": "1"},
                "annotations": {"example.com/repo": "https://example.com/typed"},
                "tier": "gold",
            },
            replicas=3,
            public=True,
            ports=[80, 443],
            flags=[1, 0],
        ),
        component_doc("floaty", replicas=3.0, public=1, ports=[443], system=""),
        component_doc(
            "stringy",
            metadata={"title": "1 stringy", "tags": ["python"]},
            replicas="3",
            public="true",
            ports="80",
            lifecycle="experimental",
        ),
        component_doc("nulls", replicas=None, public=None, system=None, ports=[]),
    )
    ids = list(Entity.objects.values_list("pk", flat=True))
    services.metrics_refresh(entity_ids=ids, now=NOW)
    return ids


def _results(scorecard) -> dict:
    return {
        row.entity.name: (row.score, row.level, row.checks)
        for row in ScorecardResult.objects.filter(scorecard=scorecard).select_related("entity")
    }


def _scorecard(rules: list, **values):
    checks = [
        {"check": services.check_create(name=f"rule {index}", rule=rule), "weight": index % 3 + 1}
        for index, rule in enumerate(rules)
    ]
    levels = [{"name": "Bronze", "threshold": 20}, {"name": "Silver", "threshold": 40}]
    return services.scorecard_create(name="Everything", levels=levels, checks=checks, **values)


def test_every_rule_compiles():
    for rule in RULES:
        ScorecardCompiler().rule(rule)


@pytest.mark.parametrize(
    "rule",
    [
        {"path": "length(entity.metadata.tags)", "op": ">=", "value": 1},
        {"path": "entity.metadata.tags[0]", "op": "==", "value": "java"},
        {"path": "entity.relations", "op": "exists"},
        {"path": "entity.metadata", "op": "exists"},
        {"path": "metrics.open_prs", "op": "exists"},
        {"path": 'entity.spec.ports."0"', "op": "exists"},
    ],
)
def test_other_paths_are_left_to_python(rule):
    with pytest.raises(NotCompilable):
        ScorecardCompiler().rule(rule)


def test_the_database_and_python_give_the_same_results_for_every_entity(catalog):
    if connection.vendor != "postgresql":
        pytest.skip("compares with the evaluation in PostgreSQL")
    scorecard = _scorecard(RULES, filter="kind=component")
    assert services.scorecard_results_refresh(scorecard_ids=[scorecard.pk], in_database=False)
    in_python = _results(scorecard)
    written = services.scorecard_results_refresh(scorecard_ids=[scorecard.pk], in_database=True)
    assert written == len(in_python) == 8
    in_database = _results(scorecard)
    for name, (score, level, checks) in in_python.items():
        assert in_database[name][:2] == (score, level), name
        for expected, got in zip(checks, in_database[name][2], strict=True):
            assert got == expected, (name, expected["name"])


def test_reasons_quote_the_value_found_as_json(catalog):
    scorecard = _scorecard(RULES)
    services.scorecard_results_refresh(scorecard_ids=[scorecard.pk], in_database=True)
    results = _results(scorecard)

    def outcome(entity: str, rule_index: int) -> tuple:
        (check,) = (c for c in results[entity][2] if c["name"] == f"rule {rule_index}")
        return check["status"], check["value"], check["reason"]

    assert outcome("stringy", 26) == (
        "error",
        "3",
        "entity.spec.replicas is \"3\", not a number, for '<='",
    )
    assert outcome("typed", 27) == (
        "error",
        True,
        "entity.spec.public is true, not a number, for '>'",
    )
    assert outcome("floaty", 11) == ("pass", 1, "")  # == 1
    assert outcome("typed", 11) == ("fail", True, "entity.spec.public is true")
    assert outcome("typed", 14)[0] == "pass"
    assert outcome("nulls", 15) == ("fail", [], "entity.spec.ports is []")
    assert outcome("alpha", 16) == ("pass", 2.0, "")
    assert outcome("loner", 18) == (
        "fail",
        None,
        "metrics.pr_cycle_time_p85_days.value has no value",
    )
    assert outcome("stringy", 37) == (
        "error",
        "1 stringy",
        "entity.metadata.title is \"1 stringy\": 'contains' needs a list or string",
    )
    assert outcome("stringy", 33) == ("fail", ["python"], "entity.metadata.tags lacks 'java'")
    assert outcome("typed", 39) == ("fail", [1, 0], "entity.spec.flags lacks True")
    # all: a failing part decides over an error, and gives the reason; the values are listed
    assert outcome("stringy", 40) == (
        "fail",
        ["team-a", None, "3"],
        "metrics.open_prs.value has no value",
    )


def test_a_scorecard_with_a_rule_the_database_cannot_read_is_evaluated_in_python(catalog):
    scorecard = _scorecard(
        [RULES[0], {"path": "length(entity.metadata.tags)", "op": ">=", "value": 2}]
    )
    assert services.scorecard_results_refresh(scorecard_ids=[scorecard.pk]) == 8
    typed = _results(scorecard)["typed"]
    assert [check["status"] for check in typed[2]] == ["pass", "pass"]
    assert typed[:2] == (100.0, "Silver")
