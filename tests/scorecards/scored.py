"""A scored world for the pages: ``small_world`` plus ``ledger`` (team-b, in the scope ``team``)
and ``secret`` (team-c, in the scope ``other``), three checks and one scorecard, evaluated.

Scores (weights: owned 1, fast-reviews 2, few-open 1; levels Bronze 25, Silver 50, Gold 75):
alpha 50 Silver (fast reviews only: median 2.5 days; 2 open), empty 25 Bronze (nothing open),
single 75 Gold (owner "unknown" only), loner, ledger and secret 25 Bronze (owned only).
"""

from catalog.models import Entity, Scope, ScopeMembership
from scorecards import services
from tests.integrations.conftest import component_doc
from tests.scorecards.conftest import NOW

OWNED_FIX = "Set spec.owner in catalog-info.yaml to the team that runs it."
FAST_FIX = "Review pull requests within a day of their opening."
OPEN_FIX = "Merge or decline the pull requests left open."


def scored_world(small_world: dict, make_entities) -> dict:
    team = Scope.objects.create(name="Team", slug="team", kind=Scope.Kind.ACCOUNT)
    other = Scope.objects.create(name="Other", slug="other", kind=Scope.Kind.ACCOUNT)
    ledger, secret = make_entities(
        component_doc("ledger", owner="team-b"), component_doc("secret", owner="team-c")
    )
    Entity.objects.filter(pk=ledger.pk).update(scope=team)
    Entity.objects.filter(pk=secret.pk).update(scope=other)
    entities = {**small_world["entities"], "ledger": ledger, "secret": secret}
    services.metrics_refresh(entity_ids=[e.pk for e in entities.values()], now=NOW)
    owned = services.check_create(
        name="owned",
        description="Someone answers for it",
        rule={"path": "entity.spec.owner", "op": "!=", "value": "unknown"},
        how_to_fix=OWNED_FIX,
    )
    fast = services.check_create(
        name="fast-reviews",
        rule={"path": "metrics.pr_cycle_time_median_days.value", "op": "<", "value": 3},
        how_to_fix=FAST_FIX,
    )
    few_open = services.check_create(
        name="few-open",
        rule={"path": "metrics.open_prs.value", "op": "<=", "value": 1},
        how_to_fix=OPEN_FIX,
    )
    scorecard = services.scorecard_create(
        name="Delivery",
        description="How well the team ships",
        filter="kind=component",
        levels=[
            {"name": "Gold", "threshold": 75},
            {"name": "Bronze", "threshold": 25},
            {"name": "Silver", "threshold": 50},
        ],
        checks=[
            {"check": owned, "weight": 1},
            {"check": fast, "weight": 2},
            {"check": few_open, "weight": 1},
        ],
    )
    services.scorecard_results_refresh()
    return {"entities": entities, "scorecard": scorecard, "team": team, "other": other}


def member_of(user, scope: Scope) -> None:
    ScopeMembership.objects.create(user=user, scope=scope)
