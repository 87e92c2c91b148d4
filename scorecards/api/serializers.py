from rest_framework import serializers

from scorecards.models import Check, CheckStatus, MetricStatus, Scorecard


class CheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = Check
        fields = ["id", "name", "description", "how_to_fix", "rule"]


class CheckInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    how_to_fix = serializers.CharField(required=False, allow_blank=True)
    rule = serializers.JSONField()


class ScorecardEntrySerializer(serializers.Serializer):
    check = serializers.IntegerField()
    weight = serializers.IntegerField(min_value=1, default=1)


class LevelSerializer(serializers.Serializer):
    name = serializers.CharField()
    threshold = serializers.FloatField()


class ScorecardSerializer(serializers.ModelSerializer):
    checks = serializers.SerializerMethodField()
    levels = LevelSerializer(many=True)
    distribution = serializers.SerializerMethodField(
        help_text="Entities per level reached (the empty key: below every level)."
    )
    failing = serializers.SerializerMethodField(
        help_text="The lowest-scoring entities below 100 (at most 20): {entity, score, level}."
    )

    class Meta:
        model = Scorecard
        fields = [
            "id",
            "name",
            "description",
            "filter",
            "levels",
            "checks",
            "distribution",
            "failing",
        ]

    def get_checks(self, scorecard) -> list[dict]:
        return [
            {"check": entry.check_item_id, "name": entry.check_item.name, "weight": entry.weight}
            for entry in scorecard.entries.all()
        ]

    def get_distribution(self, scorecard) -> dict[str, int]:
        return self.context.get("distribution", {}).get(scorecard.pk, {})

    def get_failing(self, scorecard) -> list[dict]:
        return self.context.get("failing", {}).get(scorecard.pk, [])


class ScorecardInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    filter = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    levels = serializers.JSONField(required=False)
    checks = ScorecardEntrySerializer(many=True, required=False)


class DocumentCheckSerializer(serializers.Serializer):
    """A check's outcome as entity documents carry it (and, with its id, the API)."""

    name = serializers.CharField()
    weight = serializers.IntegerField()
    status = serializers.ChoiceField(choices=CheckStatus.choices)
    value = serializers.JSONField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)


class CheckResultSerializer(DocumentCheckSerializer):
    check_id = serializers.IntegerField()


class ScorecardResultSerializer(serializers.Serializer):
    scorecard = serializers.IntegerField(source="scorecard_id")
    scorecard_name = serializers.CharField(source="scorecard.name")
    score = serializers.FloatField()
    level = serializers.CharField(allow_blank=True)
    checks = CheckResultSerializer(many=True)
    evaluated_at = serializers.DateTimeField()


class PendingRefreshSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["waiting", "failed"])
    requested_at = serializers.DateTimeField()
    failed_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)


class EntityScorecardsSerializer(serializers.Serializer):
    entity = serializers.CharField(help_text="The entity's ref.")
    metrics = serializers.DictField(
        help_text="By metric: {unit, windows: {'30'|'90'|'0': {value, n, status, computed_at}}}"
    )
    scorecards = ScorecardResultSerializer(many=True)
    refresh = PendingRefreshSerializer(
        allow_null=True,
        help_text="Null when the metrics and results are current; otherwise a recompute is "
        "waiting, or failed (with the error), and they are stale.",
    )


# The entity documents' ``scorecards`` and ``metrics`` sections (see scorecards.documents).


class DocumentScorecardSerializer(serializers.Serializer):
    name = serializers.CharField()
    score = serializers.FloatField()
    level = serializers.CharField(allow_blank=True, help_text="Empty below the lowest level.")
    checks = DocumentCheckSerializer(many=True)


class DocumentMetricWindowSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField()
    status = serializers.ChoiceField(choices=MetricStatus.choices)


class DocumentMetricSerializer(serializers.Serializer):
    unit = serializers.CharField(allow_blank=True)
    windows = serializers.DictField(
        child=DocumentMetricWindowSerializer(),
        help_text="By window in days: '30', '90', or '0' for a metric of the present.",
    )
