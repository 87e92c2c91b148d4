"""Reads of scorecards: lists with their level distribution, one entity's metrics and results
(two statements, whatever the number of scorecards), what the pages show (results with the
checks' advice, which scorecards select an entity, the failing entities of a scorecard) and the
weekly cycle-time trend of an entity's repositories."""

from datetime import UTC, date, datetime, timedelta

from django.db import connection
from django.db.models import Count, QuerySet

from catalog.models import Entity
from catalog.query import filters_q
from catalog.refs import stringify_entity_ref
from catalog.selectors import scope_visibility_q
from integrations.models import ImportedEntity, PullRequest
from scorecards.charts import TrendPoint
from scorecards.metrics import CLOSED_ON_SQL, METRICS, closed_on, percentile
from scorecards.models import Check, EntityMetric, PendingRefresh, Scorecard, ScorecardResult


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


# -- what the pages show ----------------------------------------------------------------------


def entity_results(*, entity: Entity) -> list[ScorecardResult]:
    """The entity's results with their scorecards, by scorecard name (one statement)."""
    return list(
        ScorecardResult.objects.filter(entity=entity)
        .select_related("scorecard")
        .order_by("scorecard__name")
    )


def checks_advice(*, check_ids: set[int]) -> dict[int, dict[str, str]]:
    """Each check's current description and how to fix it (results keep only its name)."""
    rows = Check.objects.filter(pk__in=check_ids).values_list("pk", "description", "how_to_fix")
    return {pk: {"description": d, "how_to_fix": fix} for pk, d, fix in rows}


def scorecards_selecting(*, entity: Entity) -> tuple[int, list[Scorecard]]:
    """How many scorecards there are, and those whose filter selects the entity: what an
    entity without results is told (two statements: the scorecards, then one row saying for
    each whether its filter matches)."""
    scorecards = list(Scorecard.objects.only("pk", "name", "filter"))
    if not scorecards:
        return 0, []
    matches = {}
    for scorecard in scorecards:
        q = filters_q([scorecard.filter]) if scorecard.filter.strip() else None
        matches[f"s{scorecard.pk}"] = Count("pk") if q is None else Count("pk", filter=q)
    row = Entity.objects.filter(pk=entity.pk).aggregate(**matches)
    return len(scorecards), [sc for sc in scorecards if row[f"s{sc.pk}"]]


def entity_metrics(*, entity: Entity) -> dict[str, dict[int, EntityMetric]]:
    """The entity's metric rows, by metric then window (one statement)."""
    metrics: dict[str, dict[int, EntityMetric]] = {}
    for metric in EntityMetric.objects.filter(entity=entity):
        metrics.setdefault(metric.metric, {})[metric.window_days] = metric
    return metrics


def scorecard_results_visible(*, user, scorecard: Scorecard) -> QuerySet[ScorecardResult]:
    results = ScorecardResult.objects.filter(scorecard=scorecard)
    q = scope_visibility_q(user, "entity__scope")
    return results if q is None else results.filter(q)


def scorecards_with_check_counts() -> QuerySet[Scorecard]:
    return Scorecard.objects.annotate(check_count=Count("entries"))


def level_counts(*, results: QuerySet[ScorecardResult]) -> dict[str, int]:
    """How many of these results reached each level (``""``: none), in one statement."""
    rows = results.order_by().values_list("level").annotate(count=Count("pk"))
    return dict(rows)


def scorecard_owners(*, results: QuerySet[ScorecardResult]) -> list[str]:
    """The ``spec.owner`` values among these results' entities, for the owner filter."""
    owners = results.exclude(entity__owner="").values_list("entity__owner", flat=True)
    return sorted(set(owners.order_by().distinct()))


def scorecard_failing(
    *, results: QuerySet[ScorecardResult], owner: str = "", level: str | None = None
) -> QuerySet[ScorecardResult]:
    """Results below 100, lowest first (ties by entity ref), of this owner and level (``""``:
    below every level; None: any)."""
    failing = results.filter(score__lt=100)
    if owner:
        failing = failing.filter(entity__owner=owner)
    if level is not None:
        failing = failing.filter(level=level)
    return failing.select_related("entity").order_by("score", "entity__ref_key")


# -- the weekly cycle-time trend --------------------------------------------------------------

# The merge time is the one the metrics use (``scorecards.metrics.CLOSED_ON_SQL``).
_WEEKLY_CYCLE_TIME = (
    """
WITH links AS (
    SELECT DISTINCT discovered_id FROM integrations_importedentity
    WHERE state = 'linked' AND entity_id = %(entity)s
),
merged AS (
    SELECT p.created_on,
           """  # noqa: S608 - a constant of this module
    + CLOSED_ON_SQL
    + """ AS merged_on
    FROM links l JOIN integrations_pullrequest p ON p.discovered_id = l.discovered_id
    WHERE p.state = 'MERGED' AND p.created_on IS NOT NULL
)
SELECT date_trunc('week', merged_on AT TIME ZONE 'UTC')::date AS week,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM merged_on - created_on))
           / 86400,
       count(*)
FROM merged
WHERE merged_on >= %(since)s
GROUP BY 1
"""
)


def _week_start(moment: datetime) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday())


def _weekly_sql(entity: Entity, since: datetime) -> dict[date, tuple[float, int]]:
    with connection.cursor() as cursor:
        cursor.execute(_WEEKLY_CYCLE_TIME, {"entity": entity.pk, "since": since})
        return {week: (median, n) for week, median, n in cursor.fetchall()}


def _weekly_python(entity: Entity, since: datetime) -> dict[date, tuple[float, int]]:
    """SQLite fallback: the same medians from the rows."""
    linked = ImportedEntity.objects.filter(entity=entity, state="linked").values("discovered_id")
    rows = PullRequest.objects.filter(
        discovered_id__in=linked, state="MERGED", created_on__isnull=False
    ).values_list("discovered_id", "state", "created_on", "updated_on", "data")
    cycles: dict[date, list[float]] = {}
    for row in rows:
        merged_on = closed_on(row)
        if merged_on >= since:
            week = _week_start(merged_on.astimezone(since.tzinfo))
            cycles.setdefault(week, []).append((merged_on - row[2]).total_seconds() / 86400)
    return {week: (percentile(values, 0.5), len(values)) for week, values in cycles.items()}


def cycle_time_weekly(*, entity: Entity, now: datetime, weeks: int = 12) -> list[TrendPoint]:
    """Median created → merged (days) of the pull requests merged each UTC week (Monday
    first), the last ``weeks`` weeks up to the current one, in one statement; a week with no
    merged pull request has no value."""
    first = _week_start(now.astimezone(UTC)) - timedelta(weeks=weeks - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    compute = _weekly_sql if connection.vendor == "postgresql" else _weekly_python
    found = compute(entity, since)
    points = []
    for index in range(weeks):
        week = first + timedelta(weeks=index)
        median, n = found.get(week, (None, 0))
        points.append(TrendPoint(week, median, n))
    return points


def entity_pending_refresh(*, entity: Entity) -> PendingRefresh | None:
    """The entity's recompute still owed (waiting or failed), or None when it is current."""
    return PendingRefresh.objects.filter(entity=entity).first()
