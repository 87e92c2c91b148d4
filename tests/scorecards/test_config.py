"""``apply_config``'s ``checks:`` and ``scorecards:`` keys: validated with their lines, applied
all or nothing with connectors and integrations, idempotent."""

import textwrap
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from integrations.config import ConfigSection, config_section_register
from scorecards import services
from scorecards.models import Check, Scorecard, ScorecardResult

pytestmark = pytest.mark.django_db

FILE = """
checks:
  - name: has-owner
    description: Someone answers for it
    how_to_fix: Set spec.owner
    rule: {path: entity.spec.owner, op: exists}
  - name: fast-reviews
    rule:
      all:
        - {path: metrics.pr_cycle_time_p85_days.value, op: "<", value: 3}
        - {path: metrics.open_prs.value, op: "<=", value: 10}
scorecards:
  - name: Basics
    description: The minimum
    filter: kind=component
    levels:
      - {name: Bronze, threshold: 50}
      - {name: Gold, threshold: 100}
    checks:
      - {check: has-owner, weight: 3}
      - {check: fast-reviews}
"""


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "lantern.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def apply(path: Path, *args: str) -> list[str]:
    out = StringIO()
    call_command("apply_config", str(path), *args, stdout=out)
    return out.getvalue().splitlines()


def refused(path: Path) -> str:
    with pytest.raises(CommandError) as caught:
        apply(path)
    return str(caught.value)


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if needle in line)


def test_the_file_creates_its_checks_and_scorecards_checks_first(write):
    assert apply(write(FILE)) == [
        "check has-owner: created",
        "check fast-reviews: created",
        "scorecard Basics: created",
        "3 created, 0 updated, 0 unchanged.",
    ]
    owner = Check.objects.get(name="has-owner")
    assert owner.rule == {"path": "entity.spec.owner", "op": "exists"}
    assert (owner.description, owner.how_to_fix) == ("Someone answers for it", "Set spec.owner")
    basics = Scorecard.objects.get()
    assert (basics.description, basics.filter) == ("The minimum", "kind=component")
    assert basics.levels == [
        {"name": "Bronze", "threshold": 50},
        {"name": "Gold", "threshold": 100},
    ]
    assert [(e.check_item.name, e.weight) for e in basics.entries.all()] == [
        ("fast-reviews", 1),
        ("has-owner", 3),
    ]


def test_a_created_scorecard_is_evaluated_once_the_file_is_committed(
    write, small_world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        apply(write(FILE))
    # every entity has an owner and no metric passes: 3 of the 4 weight points, Bronze
    results = ScorecardResult.objects.filter(scorecard__name="Basics")
    assert results.count() == 4
    assert {(r.score, r.level) for r in results} == {(75.0, "Bronze")}


def test_applying_the_same_file_again_changes_nothing(write):
    path = write(FILE)
    apply(path)
    assert apply(path) == [
        "check has-owner: unchanged",
        "check fast-reviews: unchanged",
        "scorecard Basics: unchanged",
        "0 created, 0 updated, 3 unchanged.",
    ]


def test_a_changed_weight_rule_or_level_is_an_update_naming_the_fields(write):
    apply(write(FILE))
    changed = (
        FILE.replace("weight: 3", "weight: 2")
        .replace("op: exists", "op: '=='")
        .replace("path: entity.spec.owner, op: '=='", "path: entity.spec.owner, op: '==', value: x")
        .replace("threshold: 50", "threshold: 60")
    )
    assert apply(write(changed)) == [
        "check has-owner: updated (rule)",
        "check fast-reviews: unchanged",
        "scorecard Basics: updated (checks, levels)",
        "0 created, 2 updated, 1 unchanged.",
    ]
    basics = Scorecard.objects.get()
    assert basics.levels[0] == {"name": "Bronze", "threshold": 60}
    assert basics.entries.get(check_item__name="has-owner").weight == 2
    assert Check.objects.get(name="has-owner").rule["value"] == "x"


def test_omitted_settings_and_objects_the_file_does_not_mention_are_kept(write):
    apply(write(FILE))
    services.check_create(name="from-the-admin", rule={"path": "entity.kind", "op": "exists"})
    assert apply(
        write(
            """
            checks:
              - name: has-owner
                rule: {path: entity.spec.owner, op: exists}
            scorecards:
              - name: Basics
            """
        )
    ) == [
        "check has-owner: unchanged",
        "scorecard Basics: unchanged",
        "0 created, 0 updated, 2 unchanged.",
    ]
    assert Check.objects.get(name="has-owner").description == "Someone answers for it"
    assert Scorecard.objects.get().entries.count() == 2
    assert Check.objects.filter(name__in=["fast-reviews", "from-the-admin"]).count() == 2


def test_a_dry_run_reports_and_writes_nothing(write):
    lines = apply(write(FILE), "--dry-run")
    assert lines[-1] == "3 created, 0 updated, 0 unchanged (dry run: nothing was written)."
    assert not Check.objects.exists() and not Scorecard.objects.exists()


def test_a_bad_rule_is_refused_on_the_line_of_the_part_at_fault_and_nothing_is_written(write):
    path = write(FILE.replace('op: "<=", value: 10', 'op: "<=", value: ten'))
    message = refused(path)
    line = line_of(path, "value: ten")
    assert message == (
        "Nothing was applied.\n"
        f"{path}:{line}: check fast-reviews: rule.all[1].value: '<=' compares numbers, "
        "got 'ten'"
    )
    assert not Check.objects.exists() and not Scorecard.objects.exists()


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "{path: 'metrics.nope.value', op: '<', value: 1}",
            "check c: rule.path: unknown metric 'nope' in 'metrics.nope.value'",
        ),
        ("{path: 'spec.owner', op: exists}", "check c: rule.path: unknown top-level field 'spec'"),
        (
            "{path: 'entity.[', op: exists}",
            "check c: rule.path: 'entity.[' is not a valid JMESPath",
        ),
        ("{path: entity.kind, op: like, value: x}", "check c: rule.op: 'like' is not an operator"),
        (
            "{path: entity.kind, op: in, value: x}",
            "check c: rule.value: 'in' needs a list, got 'x'",
        ),
        ("{path: entity.kind, op: '==', value: 2024-01-01}", "check c.rule: only JSON values"),
    ],
)
def test_each_kind_of_bad_rule_is_refused_with_the_model_message(write, rule, expected):
    path = write(f"checks:\n  - name: c\n    rule: {rule}\n")
    assert f"{path}:3: {expected}" in refused(path)


def test_an_unknown_check_name_is_refused_on_its_line(write):
    path = write(FILE.replace("{check: fast-reviews}", "{check: fast-review}"))
    assert refused(path).endswith(
        f"{path}:{line_of(path, 'check: fast-review}')}: scorecard Basics.checks[1].check: "
        "no check named 'fast-review' in this file or the database"
    )


def test_a_check_already_in_the_database_may_be_named(write):
    services.check_create(name="kept", rule={"path": "entity.kind", "op": "exists"})
    apply(write("scorecards:\n  - name: S\n    checks: [{check: kept}]\n"))
    assert Scorecard.objects.get().entries.get().check_item.name == "kept"


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ("[{name: Gold, threshold: high}]", "levels[0].threshold: must be a number from 0 to 100"),
        ("[{name: Gold, threshold: 90}, {name: Gold, threshold: 95}]", "levels[1].name: 'Gold'"),
        ("[{name: Gold}]", "levels[0]: must be an object with exactly name and threshold"),
        ("Gold", "levels: must be a list"),
    ],
)
def test_bad_levels_are_refused_with_their_line(write, levels, expected):
    path = write(f"scorecards:\n  - name: S\n    filter: kind=component\n    levels: {levels}\n")
    assert f"{path}:4: scorecard S: {expected}" in refused(path)


def test_a_level_deep_in_a_block_list_is_refused_on_its_own_line(write):
    path = write(FILE.replace("{name: Gold, threshold: 100}", "{name: Gold, threshold: 101}"))
    assert f"{path}:{line_of(path, 'threshold: 101')}: scorecard Basics: levels[1]" in refused(path)


def test_a_bad_filter_weight_repeat_or_key_is_refused_with_its_line(write):
    path = write(
        """
        checks:
          - name: c
            rule: {path: entity.kind, op: exists}
            colour: red
          - name: c
            rule: {path: entity.kind, op: exists}
        scorecards:
          - name: S
            filter: "=x"
            checks: [{check: c, weight: 0}, {check: c}, {check: c}]
        """
    )
    message = refused(path)
    assert f"{path}:4: check c: unknown key 'colour'" in message
    assert f"{path}:5: check c is declared twice (first on line 2)" in message
    assert f"{path}:9: scorecard S: filter: Invalid filter '=x'" in message
    assert f"{path}:10: scorecard S.checks[0].weight: must be a whole number ≥ 1, got 0" in message
    assert f"{path}:10: scorecard S.checks[2].check: 'c' is listed twice" in message


def test_unknown_top_level_keys_are_refused_naming_the_allowed_ones(write):
    path = write("checkz: []\n")
    assert refused(path).endswith(
        f"{path}:1: the file: unknown key 'checkz' (allowed: checks, connectors, integrations, "
        "scorecards)"
    )


def test_a_change_the_services_refuse_is_reported_on_its_line(write):
    long = "n" * 101
    path = write(
        f"checks:\n  - name: {long}\n    rule: {{path: entity.kind, op: exists}}\n"
        f"scorecards:\n  - name: S\n    checks: [{{check: {long}}}]\n"
    )
    message = refused(path)
    # the scorecard naming the refused check adds no error of its own
    assert message == (
        f"Nothing was applied.\n{path}:2: check {long}: name: Ensure this value has at most 100 "
        "characters (it has 101)."
    )
    assert not Check.objects.exists() and not Scorecard.objects.exists()


@pytest.mark.parametrize("key", ["checks", "connectors"])
def test_a_key_already_handled_cannot_be_registered_again(key):
    section = ConfigSection(key, lambda reader, node, plan: [], lambda specs: ([], []))
    with pytest.raises(ValueError, match=f"already handles the key '{key}'"):
        config_section_register(section)
