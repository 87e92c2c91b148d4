"""The ``scorecards`` and ``metrics`` sections of entity documents (the YAML tab and download,
the single-entity API reads): stored results, one query per section for a batch of entities.

Top-level and Lantern-only, never inside ``metadata`` or ``spec``: they are derived from the
catalog, so nothing writes them back into a catalog-info.yaml or reads them on import.
"""

from collections.abc import Sequence

from rest_framework import serializers

from catalog.models import Entity
from catalog.selectors import DocumentSection
from scorecards.api.serializers import DocumentMetricSerializer, DocumentScorecardSerializer
from scorecards.metrics import METRICS
from scorecards.models import EntityMetric, ScorecardResult


def scorecards_section_fetch(entities: Sequence[Entity]) -> dict[int, list[dict]]:
    """Per entity, its results by scorecard name: score, level and each check's outcome."""
    sections: dict[int, list[dict]] = {}
    rows = (
        ScorecardResult.objects.filter(entity_id__in=[entity.pk for entity in entities])
        .order_by("entity_id", "scorecard__name")
        .values_list("entity_id", "scorecard__name", "score", "level", "checks")
    )
    for entity_id, name, score, level, checks in rows:
        sections.setdefault(entity_id, []).append(
            {
                "name": name,
                "score": score,
                "level": level,
                "checks": [
                    {key: check.get(key) for key in ("name", "weight", "status", "value", "reason")}
                    for check in checks
                ],
            }
        )
    return sections


def metrics_section_fetch(entities: Sequence[Entity]) -> dict[int, dict]:
    """Per entity, each metric's unit and its figures per window (``"30"``, ``"90"``, ``"0"``)."""
    sections: dict[int, dict] = {}
    rows = EntityMetric.objects.filter(
        entity_id__in=[entity.pk for entity in entities]
    ).values_list("entity_id", "metric", "window_days", "value", "n", "status")
    for entity_id, metric, days, value, n, status in rows:
        spec = METRICS.get(metric)
        entry = sections.setdefault(entity_id, {}).setdefault(
            metric, {"unit": spec.unit if spec else "", "windows": {}}
        )
        entry["windows"][str(days)] = {"value": value, "n": n, "status": status}
    return sections


def _scorecards_schema() -> serializers.Field:
    return DocumentScorecardSerializer(
        many=True,
        required=False,
        help_text="Lantern only: the entity's result of each scorecard that selects it.",
    )


def _metrics_schema() -> serializers.Field:
    return serializers.DictField(
        child=DocumentMetricSerializer(),
        required=False,
        help_text="Lantern only: delivery metrics by name, from the linked repositories.",
    )


SCORECARDS_SECTION = DocumentSection("scorecards", scorecards_section_fetch, _scorecards_schema)
METRICS_SECTION = DocumentSection("metrics", metrics_section_fetch, _metrics_schema)
