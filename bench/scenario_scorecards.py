"""Scorecards at scale: delivery metrics and scores for 10,000 entities linked to repositories
with 500,000 pull requests and commits, the recompute of a few changed entities as a task does
it after a sync, and one scorecard evaluated over 100,000 entities.

The data is generated in the database (``generate_series``, a fixed seed), not through the sync:
what is measured is the scorecards' own work. PostgreSQL only (SQLite computes metrics with the
Python fallback, which is for laptops)."""

import logging
import statistics
import time

from bench.common import count_queries, scenario, target

NAMESPACE = "bench-scorecards"  # entities of their own, apart from the catalog scenarios'
INTEGRATION = "bench-scorecards"
RUNS = 3  # runs per measured operation; the figure is their median
DAYS = 120  # pull requests and commits are dated over the last 120 days
CHANGED = 50  # entities recomputed incrementally, as after a sync that touched them
TEAMS = 50

CHECKS = {
    "bench: owner set": {"path": "entity.spec.owner", "op": "exists"},
    "bench: in production": {"path": "entity.spec.lifecycle", "op": "==", "value": "production"},
    "bench: private repository": {
        "path": "properties.BitbucketCloud.visibility",
        "op": "==",
        "value": "private",
    },
    "bench: tagged java": {"path": "entity.metadata.tags", "op": "contains", "value": "java"},
    "bench: fast reviews": {"path": "metrics.pr_cycle_time_p85_days.value", "op": "<", "value": 3},
    "bench: steady merges": {
        "path": "metrics.merged_prs_per_week.last_30_days.value",
        "op": ">=",
        "value": 1,
    },
    "bench: few open pull requests": {
        "any": [
            {"path": "metrics.open_prs.value", "op": "<=", "value": 3},
            {"path": "metrics.oldest_open_pr_age_days.value", "op": "<", "value": 30},
        ]
    },
    "bench: recent commits": {
        "all": [
            {"path": "metrics.days_since_last_commit.value", "op": "<", "value": 14},
            {
                "not": {
                    "path": "metrics.commits_per_week.status",
                    "op": "==",
                    "value": "too little data",
                }
            },
        ]
    },
}
LEVELS = [
    {"name": "Bronze", "threshold": 40},
    {"name": "Silver", "threshold": 70},
    {"name": "Gold", "threshold": 90},
]
SCORECARDS = {
    # Every entity of the bench namespace: the one evaluated over 100,000.
    "bench: delivery": (
        f"kind=component,metadata.namespace={NAMESPACE}",
        {
            "bench: fast reviews": 3,
            "bench: steady merges": 2,
            "bench: few open pull requests": 1,
            "bench: recent commits": 1,
            "bench: owner set": 1,
        },
    ),
    "bench: basics": (
        f"kind=component,metadata.namespace={NAMESPACE},spec.type=service",
        {
            "bench: owner set": 1,
            "bench: in production": 1,
            "bench: private repository": 1,
            "bench: tagged java": 1,
        },
    ),
    "bench: production services": (
        f"kind=component,metadata.namespace={NAMESPACE},spec.lifecycle=production",
        {"bench: fast reviews": 1, "bench: recent commits": 1, "bench: private repository": 1},
    ),
}

# -- the data, generated in SQL ---------------------------------------------------------------

_ENTITIES = """
INSERT INTO catalog_entity (uid, api_version, kind, namespace, name, ref_key, title, description,
    spec_type, owner, lifecycle, system, tags, labels, annotations, links, spec,
    integration_links, integration_properties, etag, created_at, updated_at, metadata_extra)
SELECT gen_random_uuid(), 'backstage.io/v1alpha1', 'Component', %(ns)s, n.name,
    'component:' || %(ns)s || '/' || n.name, '', 'Bench service ' || i,
    t.type, t.owner, t.lifecycle, '',
    json_build_array(CASE WHEN i %% 2 = 0 THEN 'java' ELSE 'python' END),
    '{}'::json, '{}'::json, '[]'::json,
    json_build_object('type', t.type, 'owner', t.owner, 'lifecycle', t.lifecycle),
    '[]'::json,
    CASE WHEN i < %(linked)s THEN json_build_object('BitbucketCloud', json_build_object(
        'name', n.name, 'visibility', CASE WHEN i %% 5 = 0 THEN 'public' ELSE 'private' END,
        'default_branch', 'main')) ELSE '{}'::json END,
    md5(i::text), now(), now(), '{}'::json
FROM generate_series(0, %(count)s - 1) AS i
CROSS JOIN LATERAL (SELECT 'svc-' || lpad(i::text, 6, '0') AS name) n
CROSS JOIN LATERAL (SELECT
    (ARRAY['service', 'service', 'service', 'website', 'library'])[i %% 5 + 1] AS type,
    CASE WHEN i %% 17 = 0 THEN '' ELSE 'group:' || %(ns)s || '/team-' || i %% %(teams)s END
        AS owner,
    CASE WHEN i %% 4 = 0 THEN 'experimental' ELSE 'production' END AS lifecycle) t
"""

# The rows the catalog's search table holds for such an entity (see catalog.search).
_SEARCH = """
INSERT INTO catalog_entitysearch (entity_id, key, value, original_value)
SELECT e.id, r.key, lower(r.value), r.value
FROM catalog_entity e CROSS JOIN LATERAL (VALUES
    ('apiversion', e.api_version), ('kind', e.kind), ('metadata.name', e.name),
    ('metadata.namespace', e.namespace), ('metadata.uid', e.uid::text),
    ('metadata.description', e.description), ('metadata.tags', e.tags ->> 0),
    ('metadata.tags.' || (e.tags ->> 0), 'true'), ('spec.type', e.spec_type),
    ('spec.owner', nullif(e.owner, '')), ('spec.lifecycle', e.lifecycle)) AS r(key, value)
WHERE e.namespace = %(ns)s AND r.value IS NOT NULL
"""

_DISCOVERED = """
INSERT INTO integrations_discoveredentity (integration_id, external_id, name, data, kind, type,
    detected_at, last_seen_at, recommended_action, match_candidates, state, secondary_state,
    processing_errors)
SELECT %(integration)s, '{repo-' || e.name || '}', e.name, '{}'::jsonb, 'Component', 'service',
    now(), now(), 'register', '[]'::jsonb, 'imported', '{}'::jsonb, '{}'::jsonb
FROM catalog_entity e
WHERE e.namespace = %(ns)s AND e.name < ('svc-' || lpad(%(linked)s::text, 6, '0'))
"""

_IMPORTED = """
INSERT INTO integrations_importedentity (integration_id, discovered_id, entity_id, action, state,
    imported_at)
SELECT %(integration)s, d.id, e.id, 'REGISTER', 'linked', now()
FROM integrations_discoveredentity d
JOIN catalog_entity e ON e.namespace = %(ns)s AND e.name = d.name
WHERE d.integration_id = %(integration)s
"""

# ``per`` items per repository on average (0 to 2 × per, so some have too little data); created
# over the last DAYS days; states 70 % merged, 10 % declined, 15 % open, 5 % superseded; merged
# after 0 to 6 days; one in ten with Data Center's closedDate.
_PULL_REQUESTS = """
INSERT INTO integrations_pullrequest (discovered_id, external_id, title, state, author,
    source_branch, destination_branch, url, created_on, updated_on, data)
SELECT d.id, k::text, 'Change ' || k, p.state, 'dev-' || (k %% 7), 'feature/' || k, 'main', '',
    p.created, least(p.created + random() * interval '6 days', now()),
    CASE WHEN k %% 10 = 0 AND p.state <> 'OPEN' THEN jsonb_build_object('closedDate',
        (extract(epoch FROM least(p.created + random() * interval '4 days', now())) * 1000)::bigint)
        ELSE '{}'::jsonb END
FROM integrations_discoveredentity d
CROSS JOIN LATERAL generate_series(1, substr(d.name, 5)::int * 7919 %% (2 * %(per)s + 1)) AS k
CROSS JOIN LATERAL (SELECT now() - random() * %(days)s * interval '1 day' AS created,
    (ARRAY['MERGED', 'MERGED', 'MERGED', 'MERGED', 'MERGED', 'MERGED', 'MERGED', 'MERGED',
           'MERGED', 'MERGED', 'MERGED', 'MERGED', 'MERGED', 'MERGED', 'DECLINED', 'DECLINED',
           'OPEN', 'OPEN', 'OPEN', 'SUPERSEDED'])[1 + (k * 31 + d.id) %% 20] AS state) p
WHERE d.integration_id = %(integration)s
"""

_COMMITS = """
INSERT INTO integrations_commit (discovered_id, hash, message, author, url, date, data)
SELECT d.id, md5(d.id || '-' || k), 'Commit ' || k, 'Dev ' || ((k * 13 + d.id) %% 9), '',
    now() - random() * %(days)s * interval '1 day', '{}'::jsonb
FROM integrations_discoveredentity d
CROSS JOIN LATERAL generate_series(1, substr(d.name, 5)::int * 104729 %% (2 * %(per)s + 1)) AS k
WHERE d.integration_id = %(integration)s
"""


def _integration():
    """The bench's integration (its connector points nowhere: nothing is synced)."""
    from django.conf import settings

    from integrations import services
    from integrations.models import Integration

    existing = Integration.objects.filter(name=INTEGRATION).first()
    if existing is not None:
        return existing
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    connector = services.connector_create(
        name=INTEGRATION,
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url="http://127.0.0.1:9/2.0",
        secrets={"token": "unused"},
    )
    return services.integration_create(
        connector=connector, name=INTEGRATION, target={"workspace": "bench"}
    )


def _expected_items(linked: int, per: int) -> int:
    """How many pull requests and commits the generating statements write (their counts per
    repository follow the repository's number, as in the SQL)."""
    spread = 2 * per + 1
    return sum(i * 7919 % spread + i * 104729 % spread for i in range(linked))


def _present(integration) -> tuple[int, int, int]:
    from catalog.models import Entity
    from integrations.models import Commit, ImportedEntity, PullRequest

    of_integration = {"discovered__integration": integration}
    return (
        Entity.objects.filter(namespace=NAMESPACE).count(),
        ImportedEntity.objects.filter(integration=integration).count(),
        PullRequest.objects.filter(**of_integration).count()
        + Commit.objects.filter(**of_integration).count(),
    )


def load_world(count: int, linked: int, items: int) -> dict:
    """``count`` entities, the first ``linked`` with a repository, about ``items`` pull requests
    and commits in all (half each), unless an earlier run left them; then analyse the tables as
    autovacuum would."""
    from django.db import connection, transaction

    from catalog.models import Entity

    integration = _integration()
    per = items // linked // 2  # per repository and kind, on average
    expected = (count, linked, _expected_items(linked, per))
    if _present(integration) == expected:
        return {"entities": count, "linked": linked, "items": expected[2], "loaded": False}
    started = time.perf_counter()
    integration.discovered.all().delete()
    Entity.objects.filter(namespace=NAMESPACE).delete()
    params = {
        "ns": NAMESPACE,
        "count": count,
        "linked": linked,
        "teams": TEAMS,
        "integration": integration.pk,
        "per": per,
        "days": DAYS,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.19)")
        for statement in (_ENTITIES, _SEARCH, _DISCOVERED, _IMPORTED, _PULL_REQUESTS, _COMMITS):
            cursor.execute(statement, params)
    with connection.cursor() as cursor:
        for table in (
            "catalog_entity",
            "catalog_entitysearch",
            "integrations_discoveredentity",
            "integrations_importedentity",
            "integrations_pullrequest",
            "integrations_commit",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")
    present = _present(integration)
    if present != expected:
        raise RuntimeError(f"generated {present}, expected {expected}")
    return {
        "entities": count,
        "linked": linked,
        "items": present[2],
        "loaded": True,
        "load_s": round(time.perf_counter() - started, 1),
    }


def _scorecards() -> list:
    """The bench's checks and scorecards, validated as the services do but written directly:
    creating them through the services would evaluate each over every entity first."""
    from scorecards.models import Check, Scorecard, ScorecardCheck

    Scorecard.objects.filter(name__in=SCORECARDS).delete()
    Check.objects.filter(name__in=CHECKS).delete()
    checks = {}
    for name, rule in CHECKS.items():
        checks[name] = Check(name=name, rule=rule)
        checks[name].full_clean()
        checks[name].save()
    made = []
    for name, (filter_, weights) in SCORECARDS.items():
        scorecard = Scorecard(name=name, filter=filter_, levels=LEVELS)
        scorecard.full_clean()
        scorecard.save()
        ScorecardCheck.objects.bulk_create(
            ScorecardCheck(scorecard=scorecard, check_item=checks[check], weight=weight)
            for check, weight in weights.items()
        )
        made.append(scorecard)
    return made


def _timed(operation) -> dict:
    """Run ``operation`` :data:`RUNS` times; the median and each run's seconds and statements."""
    runs = []
    for _ in range(RUNS):
        with count_queries() as counter:
            started = time.perf_counter()
            operation()
            seconds = time.perf_counter() - started
        runs.append((seconds, counter["queries"]))
    return {
        "median_s": round(statistics.median(s for s, _ in runs), 2),
        "runs_s": [round(s, 2) for s, _ in runs],
        "sql_statements": runs[-1][1],
    }


def _python_compared(services, scorecard) -> dict:
    """One evaluation of the scorecard by the Python evaluator (what SQLite, and rules the
    database cannot read, use) and how many entities' results differ from the database's:
    compared in SQL, row by row (score, level, every check's status, value and reason)."""
    from django.db import connection

    started = time.perf_counter()
    services.scorecard_results_refresh(scorecard_ids=[scorecard.pk], in_database=False)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_in_python AS SELECT entity_id, score, level, checks "
            "FROM scorecards_scorecardresult WHERE scorecard_id = %s",
            [scorecard.pk],
        )
        compared = cursor.rowcount
        services.scorecard_results_refresh(scorecard_ids=[scorecard.pk], in_database=True)
        cursor.execute(
            "SELECT count(*) FROM ((SELECT * FROM bench_in_python EXCEPT SELECT entity_id, "
            "score, level, checks FROM scorecards_scorecardresult WHERE scorecard_id = %s) "
            "UNION ALL (SELECT entity_id, score, level, checks FROM scorecards_scorecardresult "
            "WHERE scorecard_id = %s EXCEPT SELECT * FROM bench_in_python)) differing",
            [scorecard.pk, scorecard.pk],
        )
        differing = cursor.fetchone()[0]
        cursor.execute("DROP TABLE bench_in_python")
    return {"one_run_s": round(seconds, 2), "compared": compared, "results_differing": differing}


@scenario("scorecards")
def scorecards(quick: bool) -> dict:
    """(a) every metric and every scorecard result of the 10,000 linked entities (``--quick``:
    1,000, 50,000 items); (b) the background recompute of :data:`CHANGED` of them, as the task
    sent after a sync runs it; (c) one scorecard evaluated over every entity of the bench
    namespace, 100,000 (``--quick``: 10,000)."""
    from django.db import connection
    from django.db.models import Count

    from catalog.models import Entity
    from portal.celery import app as celery_app
    from scorecards import services
    from scorecards.models import ScorecardResult

    if connection.vendor != "postgresql":
        return {"skipped": "needs PostgreSQL (the bench data is generated in SQL)"}
    count, linked, items = (10_000, 1_000, 50_000) if quick else (100_000, 10_000, 500_000)
    logging.disable(logging.INFO)
    load = load_world(count, linked, items)
    celery_app.conf.task_always_eager = True  # the bench has no worker: tasks run in process
    scorecards_made = _scorecards()
    ids = list(
        Entity.objects.filter(namespace=NAMESPACE, imports__state="linked")
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    delivery = next(sc for sc in scorecards_made if sc.name == "bench: delivery")

    full = _timed(lambda: services.metrics_refresh(entity_ids=ids))
    changed = ids[:: max(1, len(ids) // CHANGED)][:CHANGED]
    incremental = _timed(lambda: services.refresh_request(entity_ids=changed))
    evaluation = _timed(lambda: services.scorecard_results_refresh(scorecard_ids=[delivery.pk]))
    levels = dict(
        ScorecardResult.objects.filter(scorecard=delivery)
        .values_list("level")
        .annotate(n=Count("pk"))
        .order_by("level")
    )
    figures = {
        "data": load,
        "scorecards": len(scorecards_made),
        "checks": len(CHECKS),
        "full_metrics_and_scores": {"entities": len(ids), **full},
        "incremental": {"entities": len(changed), **incremental},
        "scorecard_evaluation": {
            "entities": ScorecardResult.objects.filter(scorecard=delivery).count(),
            "levels": levels,
            **evaluation,
            "in_python": _python_compared(services, delivery),
        },
    }
    target(
        figures,
        f"metrics + scores, {len(ids):,} entities, {load['items']:,} items (s)",
        full["median_s"],
        30.0,
    )
    return figures
