"""The one write door of scorecards: metrics and results recomputed for the entities whose data
changed, and checks and scorecards created, changed and deleted (validated the same way for the
admin, the API and configuration files)."""

import logging
from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from catalog.models import Entity
from catalog.query import filters_q
from catalog.selectors import entity_documents
from catalog.services import EntityChanges
from integrations.models import ImportedEntity
from scorecards.compiler import NotCompilable, scorecard_results_sql
from scorecards.metrics import metrics_compute
from scorecards.models import (
    Check,
    EntityMetric,
    PendingRefresh,
    Scorecard,
    ScorecardCheck,
    ScorecardResult,
)
from scorecards.rules import level_for, rule_evaluate

logger = logging.getLogger(__name__)

CHUNK = 2000
# pg_advisory_xact_lock key of the derived rows' writes (any 64-bit number no one else uses).
WRITES_LOCK = 0x5C0_4EC4_4D5


def _writes_serialized() -> None:
    """Inside a transaction that replaces metric or result rows, wait for any other worker
    doing the same: two recomputes of one entity that overlap would both delete the old rows
    and then both insert, and the second would break the unique constraint. The computing
    happens outside the lock; only the writes (and the SQL evaluation, which is one) queue."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [WRITES_LOCK])


# -- metrics ----------------------------------------------------------------------------------


def rows_insert(model, fields: list[str], rows: list[tuple]) -> None:
    """Insert many derived rows: with PostgreSQL's COPY (through parameters, 100,000 rows spend
    most of their time being quoted), with ``bulk_create`` elsewhere. JSON fields' values are
    given as Python data."""
    if connection.vendor != "postgresql":
        model.objects.bulk_create(model(**dict(zip(fields, row, strict=True))) for row in rows)
        return
    json_at = [
        i
        for i, name in enumerate(fields)
        if model._meta.get_field(name).get_internal_type() == "JSONField"
    ]
    columns = ", ".join(model._meta.get_field(name).column for name in fields)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {model._meta.db_table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                if json_at:
                    row = [Jsonb(v) if i in json_at else v for i, v in enumerate(row)]
                copy.write_row(row)


def metrics_refresh(*, entity_ids: Iterable[int], now: datetime | None = None) -> int:
    """Recompute and store every metric of these entities (set-based: a few statements for the
    whole set), then their scorecard results. Returns how many metric rows were written."""
    ids = sorted(set(entity_ids))
    written = 0
    now = now or timezone.now()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        values = metrics_compute(entity_ids=chunk, now=now)
        with transaction.atomic():
            _writes_serialized()
            EntityMetric.objects.filter(entity_id__in=chunk).delete()
            rows_insert(
                EntityMetric,
                ["entity_id", "metric", "window_days", "value", "n", "status", "computed_at"],
                [
                    (v.entity_id, v.metric, v.window_days, v.value, v.n, v.status, now)
                    for v in values
                ],
            )
        written += len(values)
    logger.info("scorecards.metrics.refreshed", extra={"entities": len(ids), "rows": written})
    scorecard_results_refresh(entity_ids=ids)
    return written


def metrics_documents(*, entity_ids: Iterable[int]) -> dict[int, dict]:
    """The ``metrics`` part of rule documents, per entity, in one query: each metric's no-window
    or 90-day value at the top, the 30-day one under ``last_30_days``."""
    documents: dict[int, dict] = {}
    rows = EntityMetric.objects.filter(entity_id__in=list(entity_ids)).values_list(
        "entity_id", "metric", "window_days", "value", "n", "status"
    )
    for entity_id, metric, days, value, n, status in rows:
        entry = {"value": value, "n": n, "status": status, "window_days": days}
        metrics = documents.setdefault(entity_id, {})
        if days == 30:
            metrics.setdefault(metric, {})["last_30_days"] = entry
        else:
            metrics.setdefault(metric, {}).update(entry)
    return documents


# -- scorecard evaluation ---------------------------------------------------------------------


def rule_documents(*, entities: list[Entity]) -> dict[int, dict]:
    """The documents rules read (see :mod:`scorecards.rules`), for many entities in two
    statements: relations and metrics."""
    rendered = entity_documents(entities)
    metrics = metrics_documents(entity_ids=[e.pk for e in entities])
    documents = {}
    for entity, document in zip(entities, rendered, strict=True):
        properties = document.pop("integration_properties", {})
        documents[entity.pk] = {
            "entity": document,
            "properties": properties,
            "metrics": metrics.get(entity.pk, {}),
        }
    return documents


def scorecard_evaluate(*, scorecard: Scorecard, entries: list, document: dict) -> dict:
    """One entity's result of one scorecard: score (percent of the weight passed) and level."""
    checks = []
    total = passed = 0
    for entry in entries:
        outcome = rule_evaluate(entry.check_item.rule, document)
        total += entry.weight
        passed += entry.weight if outcome.status == "pass" else 0
        checks.append(
            {
                "check_id": entry.check_item_id,
                "name": entry.check_item.name,
                "weight": entry.weight,
                **outcome.as_dict(),
            }
        )
    score = round(100 * passed / total, 2) if total else 0.0
    return {"score": score, "level": level_for(score, scorecard.levels), "checks": checks}


def scorecard_results_refresh(
    *,
    entity_ids: Iterable[int] | None = None,
    scorecard_ids: Iterable[int] | None = None,
    in_database: bool | None = None,
) -> int:
    """Evaluate scorecards for entities (all of them when ``entity_ids`` is None) and store the
    results. On PostgreSQL a scorecard whose rules compile (:mod:`scorecards.compiler`) is
    evaluated and written by one statement over the entities its filter selects; the others
    (and every scorecard on SQLite, or with ``in_database=False``) in Python over documents
    prepared in bulk. Either way the statements grow with scorecards and chunks, never with
    entities × checks."""
    scorecards = Scorecard.objects.all()
    if scorecard_ids is not None:
        scorecards = scorecards.filter(pk__in=list(scorecard_ids))
    scorecards = list(scorecards)
    if not scorecards:
        return 0
    entries: dict[int, list] = {}
    for entry in ScorecardCheck.objects.filter(scorecard__in=scorecards).select_related(
        "check_item"
    ):
        entries.setdefault(entry.scorecard_id, []).append(entry)
    scope = None if entity_ids is None else sorted(set(entity_ids))
    if connection.vendor != "postgresql":
        in_database = False
    now = timezone.now()
    written = 0
    in_python = []
    for scorecard in scorecards:
        done = None
        if in_database is not False:
            done = _results_in_database(scorecard, entries.get(scorecard.pk, []), scope, now)
        if done is None:
            in_python.append(scorecard)
        else:
            written += done
    if in_python:
        written += _results_in_python(in_python, entries, scope, now)
    logger.info(
        "scorecards.results.refreshed",
        extra={
            "scorecards": len(scorecards),
            "in_python": len(in_python),
            "results": written,
        },
    )
    return written


def _selected(scorecard: Scorecard, scope: list[int] | None):
    """The entities a scorecard applies to (its catalog filter), within ``scope``."""
    queryset = Entity.objects.all()
    q = filters_q([scorecard.filter]) if scorecard.filter.strip() else None
    if q is not None:
        queryset = queryset.filter(q)
    if scope is not None:
        queryset = queryset.filter(pk__in=scope)
    return queryset.values("pk")


def _stale(scorecards: list[Scorecard], entity_ids: list[int] | None):
    """Results to replace; all of the scorecards' without ``entity_ids`` (so those of entities
    a scorecard no longer selects go too)."""
    stale = ScorecardResult.objects.filter(scorecard__in=scorecards)
    return stale if entity_ids is None else stale.filter(entity_id__in=entity_ids)


def _results_in_database(scorecard, entries, scope, now) -> int | None:
    """How many results one statement wrote; None when a rule does not compile."""
    try:
        statement = scorecard_results_sql(
            scorecard=scorecard,
            entries=entries,
            selection=_selected(scorecard, scope).order_by().query.sql_with_params(),
            now=now,
        )
    except NotCompilable:
        return None
    with transaction.atomic():
        _writes_serialized()
        _stale([scorecard], scope).delete()
        with connection.cursor() as cursor:
            cursor.execute(statement.text, statement.params)
            return cursor.rowcount


def _results_in_python(scorecards, entries, scope, now) -> int:
    matched = {
        scorecard.pk: set(_selected(scorecard, scope).values_list("pk", flat=True))
        for scorecard in scorecards
    }
    wanted = sorted(set().union(*matched.values()))
    written = 0
    for start in range(0, max(len(wanted), 1), CHUNK):
        chunk_ids = wanted[start : start + CHUNK]
        entities = list(Entity.objects.filter(pk__in=chunk_ids).order_by("pk"))
        documents = rule_documents(entities=entities) if entities else {}
        results = []
        for scorecard in scorecards:
            for entity_id in chunk_ids:
                if entity_id in matched[scorecard.pk]:
                    result = scorecard_evaluate(
                        scorecard=scorecard,
                        entries=entries.get(scorecard.pk, []),
                        document=documents[entity_id],
                    )
                    checks = result["checks"]
                    row = (scorecard.pk, entity_id, result["score"], result["level"], checks, now)
                    results.append(row)
        with transaction.atomic():
            _writes_serialized()
            _stale(scorecards, scope if start == 0 else chunk_ids).delete()
            rows_insert(
                ScorecardResult,
                ["scorecard_id", "entity_id", "score", "level", "checks", "evaluated_at"],
                results,
            )
        written += len(results)
    return written


# -- subscriptions and the background recompute ------------------------------------------------

REFRESH_TASK_ENTITIES = CHUNK  # entities per task: a big sync sends a few tasks, not thousands


def refresh_request(*, entity_ids: Iterable[int]) -> int:
    """Mark entities as owed a recompute and send a task for those no task is carrying yet:
    one per transaction that changed them (chunked), and none for an entity already waiting,
    so a sync that writes it again before its task ran does not recompute it twice. Returns
    how many entities were sent."""
    from scorecards.tasks import entities_refresh_enqueue  # tasks imports this module

    ids = sorted(set(Entity.objects.filter(pk__in=set(entity_ids)).values_list("pk", flat=True)))
    if not ids:
        return 0
    now = timezone.now()
    with transaction.atomic():
        PendingRefresh.objects.bulk_create(
            [PendingRefresh(entity_id=pk, requested_at=now) for pk in ids],
            update_conflicts=True,
            unique_fields=["entity"],
            update_fields=["requested_at"],
        )
        # One UPDATE claims the entities no task carries; a concurrent request waits on the row
        # locks and then finds them claimed.
        PendingRefresh.objects.filter(entity_id__in=ids, queued_at__isnull=True).update(
            queued_at=now
        )
        sent = list(
            PendingRefresh.objects.filter(entity_id__in=ids, queued_at=now)
            .order_by("entity_id")
            .values_list("entity_id", flat=True)
        )
        for start in range(0, len(sent), REFRESH_TASK_ENTITIES):
            entities_refresh_enqueue(entity_ids=sent[start : start + REFRESH_TASK_ENTITIES])
    return len(sent)


def pending_refresh_run(*, entity_ids: Iterable[int]) -> int:
    """The task's work: recompute these entities' metrics and results. Success removes their
    pending rows (unless they were requested again meanwhile: their own task is coming); a
    failure is written on the rows, where the admin and the API show it, and raised for the
    worker to record."""
    ids = sorted(set(entity_ids))
    started = timezone.now()
    # From here a new change sends a new task: this one may have read the data before it.
    PendingRefresh.objects.filter(entity_id__in=ids).update(queued_at=None)
    try:
        written = metrics_refresh(entity_ids=ids, now=started)
    except Exception as exc:
        pending_refresh_failed(entity_ids=ids, error=f"{type(exc).__name__}: {exc}")
        logger.exception("scorecards.refresh.failed", extra={"entities": len(ids)})
        raise
    PendingRefresh.objects.filter(entity_id__in=ids, requested_at__lte=started).delete()
    return written


def pending_refresh_failed(*, entity_ids: Iterable[int], error: str) -> None:
    """Record why these entities' recompute did not happen (a row for each, made if missing);
    no task carries them any more."""
    now = timezone.now()
    ids = Entity.objects.filter(pk__in=set(entity_ids)).values_list("pk", flat=True)
    PendingRefresh.objects.bulk_create(
        [
            PendingRefresh(entity_id=pk, requested_at=now, failed_at=now, error=error[:2000])
            for pk in ids
        ],
        update_conflicts=True,
        unique_fields=["entity"],
        update_fields=["queued_at", "failed_at", "error"],
    )


def scorecard_results_recompute(*, scorecard_ids: list[int]) -> int:
    """The background re-evaluation after checks or scorecards were saved. If it fails, the
    entities those scorecards apply to are marked failed with the error (their results are
    stale), and the error is raised for the worker to record."""
    try:
        return scorecard_results_refresh(scorecard_ids=scorecard_ids)
    except Exception as exc:
        entity_ids: set[int] = set()
        for scorecard in Scorecard.objects.filter(pk__in=scorecard_ids):
            entity_ids.update(_selected(scorecard, None).values_list("pk", flat=True))
        pending_refresh_failed(entity_ids=entity_ids, error=f"{type(exc).__name__}: {exc}")
        logger.exception("scorecards.results.failed", extra={"scorecards": scorecard_ids})
        raise


def pending_refresh_retry(*, entity_ids: Iterable[int]) -> int:
    """Send pending entities again, whether their last attempt failed or their task was lost
    (the admin's action)."""
    ids = set(entity_ids)
    PendingRefresh.objects.filter(entity_id__in=ids).update(queued_at=None)
    return refresh_request(entity_ids=ids)


def results_refresh_request(*, scorecard_ids: list[int]) -> None:
    """Re-evaluate scorecards in the background once the current transaction commits."""
    from scorecards.tasks import results_refresh_enqueue  # tasks imports this module

    if scorecard_ids:
        results_refresh_enqueue(scorecard_ids=scorecard_ids)


def scorecards_follow_catalog(changes: EntityChanges) -> None:
    """Entities written: their documents (and so their results) may have changed, and an
    import may have linked a repository whose metrics now apply. Deleted ones cascade."""
    if changes.written:
        refresh_request(entity_ids=changes.written)


def scorecards_follow_ingestion(discovered_ids: set[int]) -> None:
    """Pull requests or commits were ingested for these repositories."""
    entity_ids = ImportedEntity.objects.filter(
        discovered_id__in=discovered_ids, state="linked"
    ).values_list("entity_id", flat=True)
    refresh_request(entity_ids=entity_ids)


# -- checks and scorecards --------------------------------------------------------------------


def _saved(instance):
    instance.full_clean()
    instance.save()
    return instance


@transaction.atomic
def check_create(*, name: str, rule: dict, description: str = "", how_to_fix: str = "") -> Check:
    return _saved(Check(name=name, rule=rule, description=description, how_to_fix=how_to_fix))


@transaction.atomic
def check_update(*, check: Check, **values) -> Check:
    for field, value in values.items():
        setattr(check, field, value)
    _saved(check)
    results_refresh_request(
        scorecard_ids=list(check.entries.values_list("scorecard_id", flat=True))
    )
    return check


def check_delete(*, check: Check) -> None:
    if check.entries.exists():
        names = ", ".join(sorted(check.entries.values_list("scorecard__name", flat=True)))
        raise ValidationError({"check": f"Check {check.name!r} is used by scorecards: {names}"})
    check.delete()


def _entries_set(scorecard: Scorecard, checks: list[dict]) -> None:
    """``checks``: [{"check": <Check or id>, "weight": int}] replacing the scorecard's."""
    errors = []
    rows = []
    for index, item in enumerate(checks):
        check = item.get("check")
        if not isinstance(check, Check):
            check = Check.objects.filter(pk=check).first()
        weight = item.get("weight", 1)
        if check is None:
            errors.append(f"checks[{index}].check: no such check {item.get('check')!r}")
        elif isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            errors.append(f"checks[{index}].weight: must be a whole number ≥ 1, got {weight!r}")
        else:
            rows.append(ScorecardCheck(scorecard=scorecard, check_item=check, weight=weight))
    if len({row.check_item.pk for row in rows}) != len(rows):
        errors.append("checks: a check appears twice")
    if errors:
        raise ValidationError({"checks": errors})
    scorecard.entries.all().delete()
    ScorecardCheck.objects.bulk_create(rows)


@transaction.atomic
def scorecard_create(
    *,
    name: str,
    description: str = "",
    filter: str = "",  # noqa: A002 - the field's name
    levels: list | None = None,
    checks: list[dict] | None = None,
) -> Scorecard:
    scorecard = _saved(
        Scorecard(name=name, description=description, filter=filter, levels=levels or [])
    )
    _entries_set(scorecard, checks or [])
    results_refresh_request(scorecard_ids=[scorecard.pk])
    return scorecard


@transaction.atomic
def scorecard_update(
    *, scorecard: Scorecard, checks: list[dict] | None = None, **values
) -> Scorecard:
    for field, value in values.items():
        setattr(scorecard, field, value)
    _saved(scorecard)
    if checks is not None:
        _entries_set(scorecard, checks)
    results_refresh_request(scorecard_ids=[scorecard.pk])
    return scorecard


def scorecard_delete(*, scorecard: Scorecard) -> None:
    scorecard.delete()
