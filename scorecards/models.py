"""Metrics per entity, checks, scorecards and their stored results.

Metrics and results are derived rows: :mod:`scorecards.services` rewrites them for the entities
whose data changed, so pages read them with one indexed query instead of computing anything.
"""

from django.core.exceptions import ValidationError
from django.db import models

from catalog.models import Entity


class MetricStatus(models.TextChoices):
    OK = "ok", "ok"
    TOO_LITTLE_DATA = "too little data", "too little data"


class CheckStatus(models.TextChoices):
    PASS = "pass", "pass"
    FAIL = "fail", "fail"
    ERROR = "error", "error"


class EntityMetric(models.Model):
    """One metric of one entity over one window (``window_days`` 0: a metric of the present,
    like open pull requests). ``n`` is how many items it was computed over."""

    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=63)
    window_days = models.PositiveSmallIntegerField()
    value = models.FloatField(null=True, blank=True)
    n = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=MetricStatus.choices)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["entity", "metric", "window_days"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "metric", "window_days"], name="scorecards_metric_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.entity_id} {self.metric} ({self.window_days}d) = {self.value}"


class Check(models.Model):
    """A rule over an entity's document, ingested properties and metrics (see
    :mod:`scorecards.rules`), with what a person needs to fix a failure."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    how_to_fix = models.TextField(blank=True)
    rule = models.JSONField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from scorecards.rules import RuleError, rule_validate

        try:
            rule_validate(self.rule)
        except RuleError as exc:
            raise ValidationError({"rule": str(exc)}) from exc


class Scorecard(models.Model):
    """Weighted checks applied to the entities a catalog filter selects, with levels reached at
    score thresholds (percent of the weight passed)."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # The catalog's ``filter`` syntax (``kind=component,spec.type=service``); empty: every entity.
    filter = models.CharField(max_length=1000, blank=True)
    # [{"name": "Bronze", "threshold": 50}, ...]
    levels = models.JSONField(default=list, blank=True)
    checks = models.ManyToManyField(
        Check,
        through="ScorecardCheck",
        related_name="scorecards",
        through_fields=("scorecard", "check_item"),
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from scorecards.rules import RuleError, filter_validate, levels_validate

        errors = {}
        for field, validate in (("filter", filter_validate), ("levels", levels_validate)):
            try:
                validate(getattr(self, field))
            except RuleError as exc:
                errors[field] = str(exc)
        if errors:
            raise ValidationError(errors)


class ScorecardCheck(models.Model):
    scorecard = models.ForeignKey(Scorecard, on_delete=models.CASCADE, related_name="entries")
    # Not ``check``: that name is Django's system-check hook on every model.
    check_item = models.ForeignKey(Check, on_delete=models.PROTECT, related_name="entries")
    weight = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["scorecard", "check_item__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["scorecard", "check_item"], name="scorecards_check_once"
            ),
            models.CheckConstraint(condition=models.Q(weight__gte=1), name="scorecards_weight_1"),
        ]

    def __str__(self) -> str:
        return f"{self.scorecard} · {self.check_item} ×{self.weight}"


class ScorecardResult(models.Model):
    """A scorecard's evaluation of one entity: ``checks`` holds each check's
    ``{check_id, name, weight, status, value, reason}``; ``level`` is empty below the lowest."""

    scorecard = models.ForeignKey(Scorecard, on_delete=models.CASCADE, related_name="results")
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()
    level = models.CharField(max_length=100, blank=True)
    checks = models.JSONField(default=list)
    evaluated_at = models.DateTimeField()

    class Meta:
        ordering = ["scorecard", "entity"]
        constraints = [
            models.UniqueConstraint(fields=["scorecard", "entity"], name="scorecards_result_once")
        ]
        indexes = [
            models.Index(fields=["scorecard", "level"], name="scorecards_result_level"),
            models.Index(fields=["entity"], name="scorecards_result_entity"),
        ]

    def __str__(self) -> str:
        return f"{self.scorecard} · {self.entity_id}: {self.score:.0f} {self.level}"


class PendingRefresh(models.Model):
    """An entity whose metrics and results are owed a recompute: written after the commit of
    whatever changed its data (a sync, a webhook refresh, a catalog write), removed by the task
    once it succeeded. ``queued_at`` says a task carrying the entity is on its way, so later
    changes do not send another; a failed attempt keeps its ``error``, so the admin and the API
    say the entity's results are stale instead of showing old ones as current."""

    entity = models.OneToOneField(
        Entity, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    requested_at = models.DateTimeField()
    queued_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-failed_at", "requested_at"]
        verbose_name_plural = "pending refreshes"

    def __str__(self) -> str:
        return f"{self.entity_id}: {self.state}"

    @property
    def state(self) -> str:
        return "failed" if self.failed_at else "waiting"
