"""The rule language: what is refused when saved (naming the part) and how rules evaluate."""

import pytest
from django.core.exceptions import ValidationError

from scorecards.models import Check
from scorecards.rules import RuleError, levels_validate, rule_evaluate, rule_validate

DOCUMENT = {
    "entity": {"kind": "Component", "metadata": {"name": "a", "tags": ["java"]}, "spec": {}},
    "properties": {"BitbucketCloud": {"default_branch": "main"}},
    "metrics": {"pr_cycle_time_p85_days": {"value": 2.5, "n": 9, "status": "ok"}},
}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"path": "metrics.[", "op": "exists"}, "rule.path: 'metrics.[' is not a valid JMESPath"),
        ({"path": "spec.owner", "op": "exists"}, "unknown top-level field 'spec'"),
        ({"path": "metrics.nope.value", "op": "<", "value": 3}, "unknown metric 'nope'"),
        ({"path": "entity.kind", "op": "~", "value": 3}, "rule.op: '~' is not an operator"),
        ({"path": "entity.kind", "op": "<", "value": "3"}, "rule.value: '<' compares numbers"),
        ({"path": "entity.kind", "op": "in", "value": "x"}, "rule.value: 'in' needs a list"),
        ({"path": "entity.kind", "op": "exists", "value": 1}, "'exists' takes no value"),
        ({"path": "entity.kind", "op": "=="}, "rule.value: '==' needs a value"),
        ({"all": []}, "rule.all: must be a non-empty list"),
        ({"any": [{"path": "x", "op": "exists"}]}, "rule.any[0].path: unknown top-level"),
        ("entity.kind", "rule: must be an object"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_part(rule, message):
    with pytest.raises(RuleError, match=None) as caught:
        rule_validate(rule)
    assert message in str(caught.value)


def test_valid_rules_pass_validation():
    rule_validate({"path": "metrics.pr_cycle_time_p85_days.value", "op": "<", "value": 3})
    rule_validate({"path": "length(entity.metadata.tags)", "op": ">=", "value": 1})
    rule_validate({"not": {"any": [{"path": "properties.BitbucketCloud", "op": "exists"}]}})


@pytest.mark.parametrize(
    ("rule", "status"),
    [
        ({"path": "metrics.pr_cycle_time_p85_days.value", "op": "<", "value": 3}, "pass"),
        ({"path": "metrics.pr_cycle_time_p85_days.value", "op": ">=", "value": 3}, "fail"),
        ({"path": "entity.spec.owner", "op": "exists"}, "fail"),
        ({"path": "entity.metadata.tags", "op": "contains", "value": "java"}, "pass"),
        ({"path": "entity.kind", "op": "in", "value": ["Component", "API"]}, "pass"),
        ({"path": "entity.kind", "op": "!=", "value": "Component"}, "fail"),
        ({"path": "entity.kind", "op": "<", "value": 3}, "error"),  # a string, not a number
        ({"path": "metrics.days_since_last_commit.value", "op": "<", "value": 90}, "fail"),
        (
            {
                "all": [
                    {"path": "entity.kind", "op": "exists"},
                    {"path": "entity.x", "op": "exists"},
                ]
            },
            "fail",
        ),
        (
            {
                "any": [
                    {"path": "entity.kind", "op": "exists"},
                    {"path": "entity.x", "op": "exists"},
                ]
            },
            "pass",
        ),
        (
            {
                "all": [
                    {"path": "entity.kind", "op": "exists"},
                    {"path": "entity.kind", "op": ">", "value": 1},
                ]
            },
            "error",
        ),
        ({"not": {"path": "entity.spec.owner", "op": "exists"}}, "pass"),
        ({"path": "entity.kind", "op": "bogus"}, "error"),  # never validated: still no exception
        ("not a rule", "error"),
    ],
)
def test_rules_evaluate_without_ever_raising(rule, status):
    outcome = rule_evaluate(rule, DOCUMENT)
    assert outcome.status == status, outcome
    if status == "error":
        assert outcome.reason


def test_a_check_with_a_bad_rule_is_refused_by_model_validation(db):
    check = Check(name="bad", rule={"path": "owner", "op": "exists"})
    with pytest.raises(ValidationError) as caught:
        check.full_clean()
    assert "unknown top-level field 'owner'" in caught.value.message_dict["rule"][0]


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ([{"name": "Gold", "threshold": 120}], "levels[0].threshold: must be a number from 0"),
        ([{"name": "", "threshold": 1}], "levels[0].name"),
        ([{"name": "A", "threshold": 1}, {"name": "A", "threshold": 2}], "'A' is used twice"),
        ({"Gold": 90}, "levels: must be a list"),
    ],
)
def test_bad_levels_are_refused(levels, message):
    with pytest.raises(RuleError) as caught:
        levels_validate(levels)
    assert message in str(caught.value)
