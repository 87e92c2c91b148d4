"""Reads of scorecards: lists with their level distribution, and one entity's metrics and
results (two statements, whatever the number of scorecards)."""

from django.db.models import Count, QuerySet

from catalog.models import Entity
from catalog.refs import stringify_entity_ref
from catalog.selectors import scope_visibility_q
from scorecards.metrics import METRICS
from scorecards.models import EntityMetric, PendingRefresh, Scorecard, ScorecardResult


def scorecards_list() -> QuerySet[Scorecard]:
    return Scorecard.objects.prefetch_related("entries__check_item")


def level_distribution(*, user, scorecards: list[Scorecard]) -> dict[int, dict[str, int]]:
    """Per scorecard, how many entities the user can see reached each level (``""``: none), in
    one aggregate query."""
    results = ScorecardResult.objects.filter(scorecard__in=scorecards)
    q = scope_visibility_q(user, "entity__scope")
    if q is not None:
        results = results.filter(q)
    distribution: dict[int, dict[str, int]] = {sc.pk: {} for sc in scorecards}
    for row in results.values("scorecard_id", "level").annotate(count=Count("pk")):
        distribution[row["scorecard_id"]][row["level"]] = row["count"]
    return distribution


def failing_entities(*, user, scorecards: list[Scorecard], limit: int = 20) -> dict[int, list]:
    """Per scorecard, the lowest-scoring entities (below 100) the user can see: one query per
    scorecard (scorecards are few; entities are many)."""
    q = scope_visibility_q(user, "entity__scope")
    failing: dict[int, list] = {}
    for scorecard in scorecards:
        results = ScorecardResult.objects.filter(scorecard=scorecard, score__lt=100)
        if q is not None:
            results = results.filter(q)
        rows = results.order_by("score", "entity__ref_key").values(
            "entity__kind", "entity__namespace", "entity__name", "score", "level"
        )[:limit]
        failing[scorecard.pk] = [
            {
                "entity": stringify_entity_ref(
                    row["entity__kind"], row["entity__namespace"], row["entity__name"]
                ),
                "score": row["score"],
                "level": row["level"],
            }
            for row in rows
        ]
    return failing


def entity_scorecards(*, entity: Entity) -> dict:
    """The entity's metrics (by name, then window) and its scorecard results."""
    metrics: dict[str, dict] = {}
    for metric in EntityMetric.objects.filter(entity=entity):
        spec = METRICS.get(metric.metric)
        entry = metrics.setdefault(
            metric.metric, {"unit": spec.unit if spec else "", "windows": {}}
        )
        entry["windows"][str(metric.window_days)] = {
            "value": metric.value,
            "n": metric.n,
            "status": metric.status,
            "computed_at": metric.computed_at,
        }
    results = ScorecardResult.objects.filter(entity=entity).select_related("scorecard")
    return {"entity": entity.ref, "metrics": metrics, "scorecards": list(results)}


def entity_pending_refresh(*, entity: Entity) -> PendingRefresh | None:
    """The entity's recompute still owed (waiting or failed), or None when it is current."""
    return PendingRefresh.objects.filter(entity=entity).first()
