"""Delivery metrics of catalog entities, from the pull requests and commits the sync ingested
for the repositories linked to them (no Bitbucket request is made here).

Definitions (``now`` is the time of computing; a window is the last 30 or 90 days):

- ``pr_cycle_time_median_days`` / ``pr_cycle_time_p85_days``: created → merged, in days, over
  the pull requests merged in the window (``percentile_cont``, linear interpolation). Merge
  time: Data Center's ``closedDate``; Bitbucket Cloud's pull request carries no merge time, so
  its ``updated_on`` stands in (a comment after the merge moves it later).
- ``merged_prs_per_week``: merged in the window ÷ (window days / 7).
- ``declined_ratio``: declined ÷ (merged + declined), over those closed in the window (Cloud's
  ``SUPERSEDED`` is neither).
- ``commits_per_week``: commits dated in the window ÷ (window days / 7).
- ``distinct_authors``: distinct commit authors in the window.
- ``open_prs`` (no window): open pull requests now; ``n`` is every pull request ingested.
- ``oldest_open_pr_age_days`` (no window): age of the oldest open one; null when none is open.
- ``days_since_last_commit`` (no window): since the newest ingested commit. Both providers
  ingest commits of the default branch only, so this is the default branch's.

Time to first activity is not computed: neither provider's pull-request listing carries the
time of a first comment or review, and the sync makes no extra request for it.

``n`` is what a metric was computed over; below :data:`MINIMUM` items it says
``too little data`` (its value is still given, for the curious). A repository with nothing of a
kind ingested says ``too little data`` for that kind's rates rather than a misleading 0.
An entity with no linked repository has no metrics.

On PostgreSQL everything is aggregated in SQL, for a whole set of entities at once; on SQLite
(laptop default) a Python fallback computes the same from the rows.
"""

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from integrations.models import Commit, ImportedEntity, PullRequest

WINDOWS = (30, 90)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    windowed: bool
    minimum: int
    unit: str
    description: str


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("pr_cycle_time_median_days", True, 3, "days", "Median created → merged"),
        MetricSpec("pr_cycle_time_p85_days", True, 5, "days", "85th percentile created → merged"),
        MetricSpec("merged_prs_per_week", True, 1, "per week", "Pull requests merged per week"),
        MetricSpec("declined_ratio", True, 3, "ratio", "Declined ÷ (merged + declined)"),
        MetricSpec("commits_per_week", True, 1, "per week", "Commits per week"),
        MetricSpec("distinct_authors", True, 1, "authors", "Distinct commit authors"),
        MetricSpec("open_prs", False, 1, "pull requests", "Open pull requests"),
        MetricSpec("oldest_open_pr_age_days", False, 0, "days", "Age of the oldest open one"),
        MetricSpec("days_since_last_commit", False, 1, "days", "Since the newest commit"),
    )
}
MINIMUM = {name: spec.minimum for name, spec in METRICS.items()}


@dataclass
class MetricValue:
    entity_id: int
    metric: str
    window_days: int
    value: float | None
    n: int
    status: str


# -- the aggregates, per (entity, window) -----------------------------------------------------

_LINKS = """
links AS (
    SELECT DISTINCT entity_id, discovered_id FROM integrations_importedentity
    WHERE state = 'linked' AND entity_id = ANY(%(ids)s)
),
windows AS (SELECT unnest(%(windows)s::int[]) AS days)
"""

# A pull request's merge or decline time in SQL (``p``: the pull-request row), as
# :func:`closed_on` reads it: Data Center's ``closedDate``, else ``updated_on`` (Bitbucket Cloud
# has no merge time).
CLOSED_ON_SQL = """CASE WHEN jsonb_typeof(p.data -> 'closedDate') = 'number'
                THEN to_timestamp((p.data ->> 'closedDate')::double precision / 1000)
                ELSE p.updated_on END"""

_PRS_BODY = (
    """,
prs AS (
    SELECT l.entity_id, p.state, p.created_on,
           """  # noqa: S608 - a constant of this module
    + CLOSED_ON_SQL
    + """ AS closed_on
    FROM links l JOIN integrations_pullrequest p ON p.discovered_id = l.discovered_id
)
SELECT prs.entity_id, w.days,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM closed_on - created_on))
        FILTER (WHERE state = 'MERGED' AND created_on IS NOT NULL) / 86400 AS cycle_median,
    percentile_cont(0.85) WITHIN GROUP (ORDER BY extract(epoch FROM closed_on - created_on))
        FILTER (WHERE state = 'MERGED' AND created_on IS NOT NULL) / 86400 AS cycle_p85,
    count(*) FILTER (WHERE state = 'MERGED' AND created_on IS NOT NULL) AS cycle_n,
    count(*) FILTER (WHERE state = 'MERGED') AS merged,
    count(*) FILTER (WHERE state = 'DECLINED') AS declined
FROM prs CROSS JOIN windows w
WHERE state IN ('MERGED', 'DECLINED') AND closed_on >= %(now)s - w.days * interval '1 day'
GROUP BY prs.entity_id, w.days
"""
)
_PRS = "WITH " + _LINKS + _PRS_BODY  # noqa: S608

_PR_TOTALS_BODY = """
SELECT l.entity_id, count(*), count(*) FILTER (WHERE p.state = 'OPEN'),
       min(p.created_on) FILTER (WHERE p.state = 'OPEN')
FROM links l JOIN integrations_pullrequest p ON p.discovered_id = l.discovered_id
GROUP BY l.entity_id
"""
_PR_TOTALS = "WITH " + _LINKS + _PR_TOTALS_BODY  # noqa: S608

_COMMITS_BODY = """
SELECT l.entity_id, w.days, count(*), count(DISTINCT nullif(c.author, ''))
FROM links l JOIN integrations_commit c ON c.discovered_id = l.discovered_id
CROSS JOIN windows w
WHERE c.date >= %(now)s - w.days * interval '1 day'
GROUP BY l.entity_id, w.days
"""
_COMMITS = "WITH " + _LINKS + _COMMITS_BODY  # noqa: S608

_COMMIT_TOTALS_BODY = """
SELECT l.entity_id, count(*), max(c.date)
FROM links l JOIN integrations_commit c ON c.discovered_id = l.discovered_id
GROUP BY l.entity_id
"""
_COMMIT_TOTALS = "WITH " + _LINKS + _COMMIT_TOTALS_BODY  # noqa: S608


_LINKED = "WITH " + _LINKS + " SELECT DISTINCT entity_id FROM links"  # noqa: S608


@dataclass
class _Aggregates:
    linked: set[int]
    prs: dict[tuple[int, int], tuple]  # (entity, days) → (median, p85, cycle_n, merged, declined)
    pr_totals: dict[int, tuple]  # entity → (total, open, oldest open created_on)
    commits: dict[tuple[int, int], tuple]  # (entity, days) → (count, authors)
    commit_totals: dict[int, tuple]  # entity → (total, newest date)


def _aggregates_sql(entity_ids: list[int], now: datetime) -> _Aggregates:
    params = {"ids": entity_ids, "windows": list(WINDOWS), "now": now}
    with connection.cursor() as cursor:
        cursor.execute(_LINKED, params)
        linked = {row[0] for row in cursor.fetchall()}
        if not linked:
            return _Aggregates(set(), {}, {}, {}, {})
        cursor.execute(_PRS, params)
        prs = {(row[0], row[1]): tuple(row[2:]) for row in cursor.fetchall()}
        cursor.execute(_PR_TOTALS, params)
        pr_totals = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
        cursor.execute(_COMMITS, params)
        commits = {(row[0], row[1]): tuple(row[2:]) for row in cursor.fetchall()}
        cursor.execute(_COMMIT_TOTALS, params)
        commit_totals = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
    return _Aggregates(linked, prs, pr_totals, commits, commit_totals)


# -- the Python fallback (SQLite): the same aggregates from the rows ---------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """``percentile_cont``: linear interpolation between the closest ranks."""
    if not values:
        return None
    values = sorted(values)
    position = (len(values) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def closed_on(state_row: tuple) -> datetime:
    _, _, _, updated_on, data = state_row
    closed = (data or {}).get("closedDate")
    if isinstance(closed, int | float) and not isinstance(closed, bool):
        return datetime.fromtimestamp(closed / 1000, tz=updated_on.tzinfo)
    return updated_on


def _aggregates_python(entity_ids: list[int], now: datetime) -> _Aggregates:
    """SQLite fallback: reads the rows of the linked repositories and aggregates in Python."""
    links = defaultdict(set)
    for entity_id, discovered_id in ImportedEntity.objects.filter(
        entity_id__in=entity_ids, state="linked"
    ).values_list("entity_id", "discovered_id"):
        links[discovered_id].add(entity_id)
    result = _Aggregates(set().union(*links.values()) if links else set(), {}, {}, {}, {})
    if not links:
        return result
    pr_rows = defaultdict(list)
    for row in PullRequest.objects.filter(discovered_id__in=links).values_list(
        "discovered_id", "state", "created_on", "updated_on", "data"
    ):
        for entity_id in links[row[0]]:
            pr_rows[entity_id].append(row)
    for entity_id, rows in pr_rows.items():
        open_created = [r[2] for r in rows if r[1] == "OPEN" and r[2] is not None]
        result.pr_totals[entity_id] = (
            len(rows),
            sum(1 for r in rows if r[1] == "OPEN"),
            min(open_created) if open_created else None,
        )
        for days in WINDOWS:
            since = now.timestamp() - days * 86400
            closed = [
                (r, closed_on(r))
                for r in rows
                if r[1] in ("MERGED", "DECLINED") and closed_on(r).timestamp() >= since
            ]
            if not closed:
                continue
            cycles = [
                (at - r[2]).total_seconds() / 86400
                for r, at in closed
                if r[1] == "MERGED" and r[2] is not None
            ]
            result.prs[(entity_id, days)] = (
                percentile(cycles, 0.5),
                percentile(cycles, 0.85),
                len(cycles),
                sum(1 for r, _ in closed if r[1] == "MERGED"),
                sum(1 for r, _ in closed if r[1] == "DECLINED"),
            )
    commit_rows = defaultdict(list)
    for discovered_id, date, author in Commit.objects.filter(discovered_id__in=links).values_list(
        "discovered_id", "date", "author"
    ):
        for entity_id in links[discovered_id]:
            commit_rows[entity_id].append((date, author))
    for entity_id, rows in commit_rows.items():
        result.commit_totals[entity_id] = (len(rows), max(date for date, _ in rows))
        for days in WINDOWS:
            since = now.timestamp() - days * 86400
            inside = [(date, author) for date, author in rows if date.timestamp() >= since]
            if inside:
                authors = {author for _, author in inside if author}
                result.commits[(entity_id, days)] = (len(inside), len(authors))
    return result


# -- from aggregates to metric values ----------------------------------------------------------


def _status(metric: str, n: int, *, has_any: bool = True) -> str:
    return "ok" if has_any and n >= MINIMUM[metric] else "too little data"


def metrics_compute(*, entity_ids: list[int], now: datetime) -> list[MetricValue]:
    """Every metric of these entities (those with a linked repository), in a few statements."""
    if not entity_ids:
        return []
    if connection.vendor == "postgresql":
        agg = _aggregates_sql(list(entity_ids), now)
    else:
        agg = _aggregates_python(list(entity_ids), now)
    values: list[MetricValue] = []
    for entity_id in sorted(agg.linked):
        pr_total, open_count, oldest_open = agg.pr_totals.get(entity_id, (0, 0, None))
        commit_total, newest_commit = agg.commit_totals.get(entity_id, (0, None))

        def add(metric, days, value, n, has_any=True, entity_id=entity_id):
            status = _status(metric, n, has_any=has_any)
            values.append(MetricValue(entity_id, metric, days, value, n, status))

        for days in WINDOWS:
            weeks = days / 7
            median, p85, cycle_n, merged, declined = agg.prs.get(
                (entity_id, days), (None, None, 0, 0, 0)
            )
            add("pr_cycle_time_median_days", days, median, cycle_n)
            add("pr_cycle_time_p85_days", days, p85, cycle_n)
            add("merged_prs_per_week", days, merged / weeks, merged, pr_total > 0)
            closed = merged + declined
            add("declined_ratio", days, declined / closed if closed else None, closed)
            count, authors = agg.commits.get((entity_id, days), (0, 0))
            add("commits_per_week", days, count / weeks, count, commit_total > 0)
            add("distinct_authors", days, float(authors), count, commit_total > 0)
        add("open_prs", 0, float(open_count), pr_total)
        oldest = (now - oldest_open).total_seconds() / 86400 if oldest_open else None
        add("oldest_open_pr_age_days", 0, oldest, open_count, pr_total > 0)
        since_last = (now - newest_commit).total_seconds() / 86400 if newest_commit else None
        add("days_since_last_commit", 0, since_last, commit_total)
    return values
