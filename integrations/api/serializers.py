"""Input and output shapes of the integrations API.

Inputs check types only; every rule about values (JMESPath, frozen secondary kinds, update
frequencies, auth kinds and their secrets) lives in :mod:`integrations.services`, which the views
call. Outputs never carry a secret: connectors say ``has_secrets``, integrations never show their
webhook secret.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.api.serializers import JSONObjectField
from integrations import choices, services
from integrations.models import (
    Connector,
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    SyncRun,
    WebhookDelivery,
)
from integrations.selectors import connectors_visible, scopes_assignable


class _UserScopedMixin:
    """A related field whose choices depend on who asks (objects outside their scopes do not
    exist for them)."""

    def _user(self):
        return self.context["request"].user


@extend_schema_field(OpenApiTypes.STR)
class ScopeField(_UserScopedMixin, serializers.SlugRelatedField):
    """A scope by its path (``acme/payments``); only the user's scopes and those below."""

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "path")
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Scope path, e.g. acme/payments; null for no scope")
        super().__init__(**kwargs)

    def get_queryset(self):
        return scopes_assignable(self._user())


@extend_schema_field(OpenApiTypes.INT)
class ConnectorField(_UserScopedMixin, serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return connectors_visible(self._user())


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "enum": [m for m, _ in choices.UPDATE_FREQUENCY_CHOICES]},
            {"type": "string", "enum": list(choices.UPDATE_FREQUENCIES)},
        ],
        "description": "Minutes, or a label such as 3h",
    }
)
class UpdateFrequencyField(serializers.Field):
    """Minutes (``180``) or a label (``"3h"``); which values are allowed is the service's call."""

    default_error_messages = {"invalid": "must be a number of minutes or a label such as 3h"}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            return data
        if isinstance(data, str):
            data = data.strip()
            return int(data) if data.isdigit() else data
        self.fail("invalid")

    def to_representation(self, value):
        return value


# Connectors


class ConnectorSerializer(serializers.ModelSerializer):
    scope = serializers.SlugRelatedField(slug_field="path", read_only=True, allow_null=True)
    # Not a "uri": blank means the provider's own address (Bitbucket Cloud).
    base_url = serializers.CharField(
        read_only=True, help_text="Instance or API URL; blank for the provider's default"
    )
    has_secrets = serializers.BooleanField(read_only=True)
    has_ca_pem = serializers.SerializerMethodField()

    class Meta:
        model = Connector
        fields = [
            "id",
            "name",
            "provider",
            "auth_kind",
            "base_url",
            "config",
            "has_ca_pem",
            "has_secrets",
            "scope",
            "health",
            "last_error",
            "last_checked_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_ca_pem(self, connector: Connector) -> bool:
        return bool(connector.ca_pem)


class ConnectorUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    auth_kind = serializers.CharField(max_length=40, required=False)
    base_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    config = JSONObjectField(required=False)
    ca_pem = serializers.CharField(
        required=False, allow_blank=True, write_only=True, help_text="Private CA (PEM)"
    )
    scope = ScopeField()
    secrets = serializers.DictField(
        required=False,
        write_only=True,
        help_text="Write-only; replaces the stored secrets when given ({} clears them)",
    )

    def validate(self, attrs):
        if "provider" in self.initial_data:
            raise serializers.ValidationError(
                {"provider": "The provider of a connector cannot change"}
            )
        return attrs


class ConnectorCreateSerializer(ConnectorUpdateSerializer):
    name = serializers.CharField(max_length=100)
    provider = serializers.CharField(max_length=50)
    auth_kind = serializers.CharField(max_length=40)

    def validate(self, attrs):
        return attrs


# Integrations


class CorrelationRuleSerializer(serializers.Serializer):
    ingested = serializers.CharField(help_text="JMESPath over the provider's record")
    catalog = serializers.CharField(help_text="JMESPath over the rendered entity document")
    operator = serializers.ChoiceField(
        choices=choices.Operator.choices, default=choices.Operator.EQUALS
    )


class IntegrationCountsSerializer(serializers.Serializer):
    discovered = serializers.IntegerField(help_text="Records the source lists now (not gone)")
    imported = serializers.IntegerField(help_text="Records linked to a catalog entity")


class IntegrationSerializer(serializers.ModelSerializer):
    scope = serializers.SlugRelatedField(slug_field="path", read_only=True, allow_null=True)
    connector = serializers.PrimaryKeyRelatedField(read_only=True)
    correlation = serializers.SerializerMethodField()
    field_mappings = serializers.SerializerMethodField()
    labels = serializers.ListField(child=serializers.CharField(), read_only=True)
    target = JSONObjectField(read_only=True)
    secondary_kinds = serializers.ListField(child=serializers.CharField(), read_only=True)
    # A plain string here: the enum is documented once, on the input.
    state = serializers.CharField(read_only=True, help_text="enabled or suspended")
    webhook_url = serializers.SerializerMethodField()
    webhook_registration = serializers.ChoiceField(
        choices=choices.WebhookRegistration.choices,
        allow_blank=True,
        read_only=True,
        help_text="Blank until Lantern has tried to register the webhook",
    )
    counts = serializers.SerializerMethodField()

    class Meta:
        model = Integration
        fields = [
            "id",
            *services.INTEGRATION_SETTINGS,
            "provider",
            "correlation",
            "field_mappings",
            "last_sync_at",
            "next_sync_at",
            "webhook_url",
            "webhook_registration",
            "webhook_registration_detail",
            "counts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(CorrelationRuleSerializer(many=True))
    def get_correlation(self, integration: Integration) -> list[dict]:
        return [
            {"ingested": r.ingested_path, "catalog": r.catalog_path, "operator": r.operator}
            for r in integration.correlation_rules.all()
        ]

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_field_mappings(self, integration: Integration) -> dict[str, str]:
        return {m.catalog_path: m.expression for m in integration.field_mappings.all()}

    def get_webhook_url(self, integration: Integration) -> str:
        return integration.webhook_url

    @extend_schema_field(IntegrationCountsSerializer)
    def get_counts(self, integration: Integration) -> dict:
        return {
            "discovered": getattr(integration, "discovered_count", 0),
            "imported": getattr(integration, "imported_count", 0),
        }


class IntegrationWriteSerializer(serializers.Serializer):
    """Create (``name`` and ``connector`` required) and PATCH (everything optional)."""

    name = serializers.CharField(max_length=100)
    connector = ConnectorField()
    description = serializers.CharField(required=False, allow_blank=True)
    labels = serializers.ListField(child=serializers.CharField(), required=False)
    scope = ScopeField()
    target = JSONObjectField(required=False, help_text="workspace, projects, pattern…")
    registration = serializers.ChoiceField(choices=choices.Registration.choices, required=False)
    entity_kind = serializers.CharField(max_length=63, required=False)
    entity_type = serializers.CharField(max_length=63, required=False, allow_blank=True)
    secondary_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=choices.SecondaryKind.choices),
        required=False,
        help_text="Locked once the integration exists",
    )
    update_frequency = UpdateFrequencyField(required=False)
    start_date = serializers.DateField(required=False, allow_null=True)
    auto_import = serializers.BooleanField(required=False)
    state = serializers.ChoiceField(choices=choices.IntegrationState.choices, required=False)
    vanish_threshold = serializers.FloatField(required=False)
    correlation = CorrelationRuleSerializer(many=True, required=False)
    field_mappings = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="catalog path → JMESPath expression over the record",
    )


# Discovered and imported records


class EntityMatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ref = serializers.CharField()


class DiscoveredEntitySerializer(serializers.ModelSerializer):
    suggested_match = serializers.SerializerMethodField()
    match_candidates = EntityMatchSerializer(many=True, read_only=True)

    class Meta:
        model = DiscoveredEntity
        fields = [
            "id",
            "name",
            "external_id",
            "recommended_action",
            "suggested_match",
            "match_candidates",
            "kind",
            "type",
            "state",
            "detected_at",
            "last_seen_at",
        ]
        read_only_fields = fields

    @extend_schema_field(EntityMatchSerializer(allow_null=True))
    def get_suggested_match(self, discovered: DiscoveredEntity) -> dict | None:
        entity = discovered.suggested_entity
        return {"id": entity.pk, "ref": entity.ref} if entity is not None else None


class ImportItemSerializer(serializers.Serializer):
    discovered_id = serializers.IntegerField()
    # The engine checks the value (per item); an enum here would give the recommendation's
    # choice set a second name in the schema.
    action = serializers.CharField(
        required=False,
        help_text="register or merge; default: the recommendation (merge when there is a match)",
    )
    entity_id = serializers.IntegerField(required=False, help_text="Merge target")
    entity_ref = serializers.CharField(required=False, help_text="Merge target, as an entity ref")
    type = serializers.CharField(
        max_length=63, required=False, help_text="spec.type of a registered entity"
    )

    def validate(self, attrs):
        if "entity_id" in attrs and "entity_ref" in attrs:
            raise serializers.ValidationError("Give entity_id or entity_ref, not both")
        return attrs


class ImportBatchSerializer(serializers.Serializer):
    items = ImportItemSerializer(many=True, allow_empty=False)


class ImportResultSerializer(serializers.Serializer):
    discovered_id = serializers.IntegerField()
    ok = serializers.BooleanField()
    imported_id = serializers.IntegerField(required=False)
    error = serializers.CharField(required=False)


class ImportResponseSerializer(serializers.Serializer):
    results = ImportResultSerializer(many=True)


class ImportedEntitySerializer(serializers.ModelSerializer):
    entity_id = serializers.IntegerField(read_only=True)
    entity_name = serializers.CharField(source="entity.name", read_only=True)
    entity_ref = serializers.CharField(source="entity.ref", read_only=True)
    entity_uid = serializers.UUIDField(source="entity.uid", read_only=True)
    kind = serializers.CharField(source="entity.kind", read_only=True)
    type = serializers.CharField(source="entity.spec_type", read_only=True)
    scope = serializers.CharField(source="entity.scope.path", read_only=True, allow_null=True)
    status = serializers.CharField(
        source="get_action_display", read_only=True, help_text="Registered or Merged"
    )

    class Meta:
        model = ImportedEntity
        fields = [
            "id",
            "discovered_id",
            "entity_id",
            "entity_name",
            "entity_ref",
            "entity_uid",
            "kind",
            "type",
            "scope",
            "action",
            "status",
            "state",
            "imported_at",
            "unlinked_at",
        ]
        read_only_fields = fields


class SyncRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRun
        fields = [
            "id",
            "trigger",
            "state",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "pages",
            "requests",
            "discovered",
            "imported",
            "refreshed",
            "gone",
            "pull_requests",
            "commits",
            "flagged",
            "message",
            "error",
        ]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    latency_ms = serializers.SerializerMethodField()

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "delivery_id",
            "event",
            "repository_name",
            "received_at",
            "processed_at",
            "outcome",
            "detail",
            "latency_ms",
        ]
        read_only_fields = fields

    def get_latency_ms(self, delivery: WebhookDelivery) -> int | None:
        latency = delivery.latency
        return round(latency.total_seconds() * 1000) if latency is not None else None


class QueuedSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
