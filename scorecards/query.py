"""Catalog filter keys and order fields over scorecard results, for the catalog API's
``filter=`` / predicates / ``orderField`` and the entity list.

- ``scorecard.<name>.level=<level>``: entities whose result of the scorecard reached that level
  (names of scorecards and levels in any case); an empty value (``scorecard.<name>.level=``)
  means scored but below every level; the key alone, scored at all.
- ``scorecard.<name>.score``: order by the score; entities the scorecard does not select last.

Each resolves the scorecard by name once (so an unknown name is a 400 naming it) and compiles
to indexed lookups of ``ScorecardResult``: (scorecard, level) for filters, (scorecard, entity)
for ordering.
"""

from typing import Any

from django.db.models import FloatField, OuterRef, Q, Subquery, Value

from catalog.query import QueryChoice, QueryError, QueryField
from scorecards.models import Scorecard, ScorecardResult

PREFIX = "scorecard."
LEVEL = ".level"
SCORE = ".score"
NO_LEVEL = "no level"


def _scorecard(key: str, suffix: str) -> Scorecard:
    name = key.removeprefix(PREFIX).removesuffix(suffix)
    if not key.endswith(suffix) or not name:
        use = (
            "filter by scorecard.<name>.level"
            if suffix == LEVEL
            else "order by scorecard.<name>.score"
        )
        raise QueryError(f"Unknown scorecard field {key!r}: {use}")
    found = list(Scorecard.objects.filter(name__iexact=name).only("pk", "name", "levels")[:2])
    if not found:
        raise QueryError(f"No scorecard named {name!r} (in {key!r})")
    if len(found) > 1:
        raise QueryError(f"Several scorecards are named {name!r} in different cases; rename one")
    return found[0]


def _level(scorecard: Scorecard, value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        raise QueryError(f"A level of scorecard {scorecard.name!r} must be a name, got {value!r}")
    text = str(value).strip()
    if not text:
        return ""
    for level in scorecard.levels:
        if level["name"].lower() == text.lower():
            return level["name"]
    known = ", ".join(level["name"] for level in scorecard.levels) or "none"
    raise QueryError(
        f"Scorecard {scorecard.name!r} has no level {text!r} (its levels: {known}; an empty "
        "value selects entities below every level)"
    )


def scorecard_condition_q(key: str, values: list[Any] | None, prefix: Any) -> Q:
    scorecard = _scorecard(key, LEVEL)
    rows = ScorecardResult.objects.filter(scorecard_id=scorecard.pk)
    if values is not None:
        rows = rows.filter(level__in=[_level(scorecard, value) for value in values])
    if prefix is not None:
        rows = rows.filter(level__istartswith=str(prefix))
    return Q(pk__in=rows.values("entity_id"))


def scorecard_order(field: str) -> tuple[Subquery, Value]:
    scorecard = _scorecard(field, SCORE)
    score = ScorecardResult.objects.filter(scorecard_id=scorecard.pk, entity=OuterRef("pk"))
    return Subquery(score.values("score")[:1], output_field=FloatField()), Value(0.0)


def scorecard_choices() -> list[QueryChoice]:
    """Every scorecard with its levels, lowest first (one query)."""
    return [
        QueryChoice(
            label=name,
            filter_key=f"{PREFIX}{name}{LEVEL}",
            values=[level["name"] for level in sorted(levels, key=lambda lv: lv["threshold"])],
            none_label=NO_LEVEL,
            order_field=f"{PREFIX}{name}{SCORE}",
        )
        for name, levels in Scorecard.objects.order_by("name").values_list("name", "levels")
    ]


SCORECARD_QUERY_FIELD = QueryField(
    PREFIX, scorecard_condition_q, scorecard_order, scorecard_choices
)
