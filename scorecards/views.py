"""Where people see scorecards: the entity page's Scorecards tab, the Delivery metrics card of
its Overview, and the Scorecards pages (each scorecard's level distribution; one scorecard's
failing entities, by owner and level).

Reading follows the catalog: whoever may read an entity sees its scores, and the pages count
only the entities the user may read. Views stay thin: reads are :mod:`scorecards.selectors`,
chart geometry is :mod:`scorecards.charts`.
"""

import json
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from catalog.models import Entity
from catalog.views import catalog_read_required, entity_for_request, entity_page_context
from scorecards import selectors
from scorecards.charts import level_bar, levels_ascending, weekly_trend
from scorecards.metrics import METRICS
from scorecards.models import Scorecard, ScorecardResult

FAILING_PAGE_SIZE = 25
# The level filter's value for entities below every level (a level name cannot be empty).
BELOW_EVERY_LEVEL = "-"
STATUS_ORDER = {"fail": 0, "error": 1, "pass": 2}


def _shown(value: Any) -> str:
    """A check's value as a person reads it."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, str):
        return value
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:199] + "…"


def _next_level(score: float, levels: list[dict]) -> dict | None:
    """The lowest level above the score, with the points it takes to reach it."""
    above = [level for level in levels_ascending(levels) if level["threshold"] > score]
    if not above:
        return None
    level = above[0]
    return {**level, "needed": round(level["threshold"] - score, 2)}


def _result_card(result: ScorecardResult, advice: dict[int, dict[str, str]]) -> dict:
    total = sum(check["weight"] for check in result.checks) or 1
    checks = [
        {
            **check,
            "shown_value": _shown(check.get("value")),
            "points": round(100 * check["weight"] / total, 1),
            **advice.get(check["check_id"], {"description": "", "how_to_fix": ""}),
        }
        for check in result.checks
    ]
    checks.sort(key=lambda check: STATUS_ORDER.get(check["status"], 0))
    levels = levels_ascending(result.scorecard.levels)
    return {
        "scorecard": result.scorecard,
        "score": result.score,
        "level": result.level,
        "levels": [{**level, "reached": result.score >= level["threshold"]} for level in levels],
        "next_level": _next_level(result.score, levels),
        "checks": checks,
        "failing": sum(1 for check in checks if check["status"] != "pass"),
        "evaluated_at": result.evaluated_at,
    }


@require_GET
@catalog_read_required
def entity_scorecards(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    """Each scorecard's result for the entity: two statements beyond the entity page's own
    (results with their scorecards, and the checks' advice); without results, two to say why
    (the scorecards, and which of them select the entity)."""
    entity = entity_for_request(request, namespace, kind, name)
    context = entity_page_context(entity, "scorecards", request)
    results = selectors.entity_results(entity=entity)
    if results:
        advice = selectors.checks_advice(
            check_ids={check["check_id"] for result in results for check in result.checks}
        )
        context["cards"] = [_result_card(result, advice) for result in results]
    else:
        context["scorecard_count"], context["selecting"] = selectors.scorecards_selecting(
            entity=entity
        )
    return render(request, "scorecards/entity_scorecards.html", context)


# -- the Overview's Delivery metrics card ------------------------------------------------------


def _metric_shown(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value:.2f} ({value * 100:.0f} %)"
    if unit in ("days", "per week"):
        return f"{value:.1f} {unit}"
    return f"{value:.0f}"


def _metric_cell(metric, spec) -> dict | None:
    if metric is None:
        return None
    return {
        "shown": _metric_shown(metric.value, spec.unit),
        "n": metric.n,
        "minimum": spec.minimum,
        "too_little": metric.status != "ok",
    }


def _metric_rows(metrics: dict[str, dict]) -> list[dict]:
    rows = []
    for spec in METRICS.values():
        windows = metrics.get(spec.name, {})
        rows.append(
            {
                "name": spec.name,
                "label": spec.description,
                "unit": spec.unit,
                "windowed": spec.windowed,
                "last_30": _metric_cell(windows.get(30), spec),
                "last_90": _metric_cell(windows.get(90), spec),
                "now": _metric_cell(windows.get(0), spec),
            }
        )
    return rows


def delivery_metrics_panel(request: HttpRequest, entity: Entity) -> dict | None:
    """The Overview card: each metric's 30- and 90-day figures and the weekly cycle-time trend
    (two statements); none for an entity with no metrics (no linked repository)."""
    metrics = selectors.entity_metrics(entity=entity)
    if not metrics:
        return None
    computed = max(m.computed_at for windows in metrics.values() for m in windows.values())
    trend = weekly_trend(selectors.cycle_time_weekly(entity=entity, now=timezone.now()))
    return {"rows": _metric_rows(metrics), "computed_at": computed, "trend": trend}


# -- the scorecards pages ----------------------------------------------------------------------


@require_GET
@catalog_read_required
def scorecard_list(request: HttpRequest) -> HttpResponse:
    scorecards = list(selectors.scorecards_with_check_counts())
    distribution = selectors.level_distribution(user=request.user, scorecards=scorecards)
    rows = [
        {
            "scorecard": scorecard,
            "bar": level_bar(distribution=distribution[scorecard.pk], levels=scorecard.levels),
        }
        for scorecard in scorecards
    ]
    return render(request, "scorecards/scorecard_list.html", {"rows": rows})


def _failing_row(result: ScorecardResult) -> dict:
    return {
        "result": result,
        "entity": result.entity,
        "failing": [check for check in result.checks if check["status"] != "pass"],
    }


@require_GET
@catalog_read_required
def scorecard_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The scorecard's distribution (of one owner's entities, if chosen) and its failing
    entities, lowest score first, of that owner and level."""
    scorecard = get_object_or_404(Scorecard, pk=pk)
    owner = request.GET.get("owner", "").strip()
    level_param = request.GET.get("level", "").strip()
    level_names = [level["name"] for level in levels_ascending(scorecard.levels)]
    error = ""
    level: str | None = None
    if level_param == BELOW_EVERY_LEVEL:
        level = ""
    elif level_param in level_names:
        level = level_param
    elif level_param:
        error = f"This scorecard has no level {level_param!r}: showing every level."
    results = selectors.scorecard_results_visible(user=request.user, scorecard=scorecard)
    owners = selectors.scorecard_owners(results=results)
    owned = results.filter(entity__owner=owner) if owner else results
    bar = level_bar(distribution=selectors.level_counts(results=owned), levels=scorecard.levels)
    failing = selectors.scorecard_failing(results=results, owner=owner, level=level)
    page = Paginator(failing, FAILING_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "scorecard": scorecard,
        "bar": bar,
        "owners": owners,
        "owner": owner,
        "levels": level_names,
        "level": level_param if level is not None else "",
        "below_every_level": BELOW_EVERY_LEVEL,
        "page": page,
        "rows": [_failing_row(result) for result in page],
        "error": error,
    }
    return render(request, "scorecards/scorecard_detail.html", context)
