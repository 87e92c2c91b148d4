"""Input and output shapes of the integrations API.

Inputs check types only; every rule about values (JMESPath, frozen secondary kinds, update
frequencies, auth kinds and their secrets) lives in :mod:`integrations.services`, which the views
call. Outputs never carry a secret: connectors say ``has_secrets``, integrations never show their
webhook secret.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import flatten_choices_dict, to_choices_dict

from catalog.api.serializers import JSONObjectField
from integrations import choices, services
from integrations.models import (
    Connector,
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    SyncRun,
    WebhookDelivery,
    WriteBack,
    WriteBackBatch,
)
from integrations.providers import registry
from integrations.providers.http import ConnectorNetwork
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


class AuthKindField(serializers.ChoiceField):
    """One of the auth kinds the registered providers declare, read from the registry whenever
    the choices are asked for (the schema, validation), so a provider registered later is
    offered too: DRF builds a declared field once per serializer class."""

    def __init__(self, **kwargs):
        super().__init__(choices=[], **kwargs)

    def _get_choices(self) -> dict:
        self.grouped_choices = to_choices_dict(registry.auth_kind_choices())
        self._choices = flatten_choices_dict(self.grouped_choices)
        self.choice_strings_to_values = {str(key): key for key in self._choices}
        return self._choices

    def _set_choices(self, choices) -> None:
        """The registry decides (what ``__init__`` passes is ignored)."""

    def to_internal_value(self, data):
        self._get_choices()
        return super().to_internal_value(data)

    def to_representation(self, value):
        return value  # a stored key, shown as it is

    choices = property(_get_choices, _set_choices)


class ConnectorSerializer(serializers.ModelSerializer):
    scope = serializers.SlugRelatedField(slug_field="path", read_only=True, allow_null=True)
    auth_kind = AuthKindField(read_only=True)
    # Not a "uri": blank means the provider's own address (Bitbucket Cloud).
    base_url = serializers.CharField(
        read_only=True, help_text="Instance or API URL; blank for the provider's default"
    )
    has_secrets = serializers.BooleanField(read_only=True)
    has_ca_pem = serializers.SerializerMethodField()
    proxy = serializers.CharField(
        source="proxy_display",
        read_only=True,
        help_text="The connector's own proxy URL, password masked; blank: the environment's",
    )
    connect_timeout = serializers.SerializerMethodField()
    read_timeout = serializers.SerializerMethodField()

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
            "proxy",
            "connect_timeout",
            "read_timeout",
            "scope",
            "health",
            "last_error",
            "last_checked_at",
            "last_success_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_ca_pem(self, connector: Connector) -> bool:
        return bool(connector.ca_pem)

    @extend_schema_field(OpenApiTypes.NUMBER)
    def get_connect_timeout(self, connector: Connector) -> float:
        """Seconds in effect (``config.connect_timeout`` or the default)."""
        return ConnectorNetwork.of(connector).with_defaults().connect_timeout

    @extend_schema_field(OpenApiTypes.NUMBER)
    def get_read_timeout(self, connector: Connector) -> float:
        """Seconds in effect (``config.read_timeout`` or the default)."""
        return ConnectorNetwork.of(connector).with_defaults().read_timeout


class ConnectorUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    auth_kind = serializers.CharField(max_length=40, required=False)
    base_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    config = JSONObjectField(required=False)
    ca_pem = serializers.CharField(
        required=False, allow_blank=True, write_only=True, help_text="Private CA (PEM)"
    )
    proxy_url = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        max_length=500,
        help_text="Write-only HTTP(S) proxy (may hold user:password@); blank removes it",
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
    writeback_mode = serializers.ChoiceField(
        choices=choices.WritebackMode.choices,
        required=False,
        help_text="How catalog-info.yaml is written back; commit allows direct commits",
    )
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


class ProcessingErrorSerializer(serializers.Serializer):
    """What failed when a discovered record was last handled at one stage, until it succeeds."""

    # Plain strings: the stage names are listed here once, not as a second enum component.
    stage = serializers.CharField(help_text=f"One of {', '.join(choices.ProcessingStage.values)}")
    message = serializers.CharField()
    reason = serializers.CharField(help_text="Short; groups the run's error summary")
    hint = serializers.CharField(help_text="What a person can do about it")
    since = serializers.DateTimeField(help_text="First failure while this stage keeps failing")
    at = serializers.DateTimeField(help_text="Latest failure")
    run_id = serializers.IntegerField(allow_null=True, help_text="The run that saw it last")


_PROCESSING_ERROR_KEYS = ("message", "reason", "hint", "since", "at", "run_id")
_STAGE_ORDER = {stage: index for index, stage in enumerate(choices.ProcessingStage.values)}


def processing_errors_list(errors: dict | None) -> list[dict]:
    """A record's ``processing_errors`` (stage → error) as a list in pipeline order."""
    return [
        {"stage": stage, **{key: (errors[stage] or {}).get(key) for key in _PROCESSING_ERROR_KEYS}}
        for stage in sorted(errors or {}, key=lambda stage: (_STAGE_ORDER.get(stage, 99), stage))
    ]


class DiscoveredEntitySerializer(serializers.ModelSerializer):
    suggested_match = serializers.SerializerMethodField()
    match_candidates = EntityMatchSerializer(many=True, read_only=True)
    name_holder = serializers.SerializerMethodField()
    needs_attention = serializers.BooleanField(
        read_only=True, help_text="A stage failed and has not succeeded since (error_since set)"
    )
    processing_errors = serializers.SerializerMethodField()

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
            "gone_at",
            "needs_attention",
            "error_since",
            "processing_errors",
            "name_holder",
        ]
        read_only_fields = fields

    @extend_schema_field(EntityMatchSerializer(allow_null=True))
    def get_suggested_match(self, discovered: DiscoveredEntity) -> dict | None:
        entity = discovered.suggested_entity
        return {"id": entity.pk, "ref": entity.ref} if entity is not None else None

    @extend_schema_field(
        EntityMatchSerializer(
            allow_null=True,
            help_text="With recommended_action conflict: the catalog entity holding the name",
        )
    )
    def get_name_holder(self, discovered: DiscoveredEntity) -> dict | None:
        entity = discovered.name_holder
        return {"id": entity.pk, "ref": entity.ref} if entity is not None else None

    @extend_schema_field(ProcessingErrorSerializer(many=True))
    def get_processing_errors(self, discovered: DiscoveredEntity) -> list[dict]:
        return processing_errors_list(discovered.processing_errors)


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


# The Imported view's states: a link's own, and ``source_gone`` for a linked entity whose
# repository the provider no longer lists (its discovered record is gone).
SOURCE_GONE = "source_gone"
IMPORTED_STATES = [*choices.LinkState.values, SOURCE_GONE]


def imported_state(imported: ImportedEntity) -> tuple[str, object]:
    """(state, source_gone_since) of a link; from the list's annotations when present."""
    if hasattr(imported, "source_state"):
        source_state, gone_at = imported.source_state, imported.source_gone_at
    else:
        source_state, gone_at = imported.discovered.state, imported.discovered.gone_at
    if imported.state == choices.LinkState.LINKED and source_state == choices.DiscoveredState.GONE:
        return SOURCE_GONE, gone_at
    return imported.state, None


class ImportedEntitySerializer(serializers.ModelSerializer):
    entity_id = serializers.IntegerField(read_only=True)
    entity_name = serializers.CharField(source="entity.name", read_only=True)
    entity_ref = serializers.CharField(source="entity.ref", read_only=True)
    entity_uid = serializers.UUIDField(source="entity.uid", read_only=True)
    repository_name = serializers.CharField(
        source="source_name",
        read_only=True,
        help_text="The discovered repository the link came from (a merged entity has its own name)",
    )
    repository_url = serializers.CharField(
        source="source_url",
        read_only=True,
        help_text="The repository's web page at the provider; empty when the provider gave none",
    )
    repository_state = serializers.CharField(
        source="source_state",
        read_only=True,
        help_text=f"The discovered record's state, one of {', '.join(choices.DiscoveredState)}",
    )
    kind = serializers.CharField(source="entity.kind", read_only=True)
    type = serializers.CharField(source="entity.spec_type", read_only=True)
    scope = serializers.CharField(source="entity.scope.path", read_only=True, allow_null=True)
    status = serializers.CharField(
        source="get_action_display", read_only=True, help_text="Registered or Merged"
    )
    state = serializers.SerializerMethodField(
        help_text=f"One of {', '.join(IMPORTED_STATES)}: source_gone is a linked entity whose "
        "repository is no longer listed"
    )
    source_gone_since = serializers.SerializerMethodField()
    declared_in_repository = serializers.BooleanField(
        source="declared",
        read_only=True,
        default=False,
        help_text="The repository's catalog-info.yaml describes the entity (as the last sync read)",
    )

    class Meta:
        model = ImportedEntity
        fields = [
            "id",
            "discovered_id",
            "repository_name",
            "repository_url",
            "repository_state",
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
            "source_gone_since",
            "declared_in_repository",
            "imported_at",
            "unlinked_at",
        ]
        read_only_fields = fields

    def get_state(self, imported: ImportedEntity) -> str:
        return imported_state(imported)[0]

    @extend_schema_field(
        serializers.DateTimeField(
            allow_null=True, help_text="When a full listing first missed the repository"
        )
    )
    def get_source_gone_since(self, imported: ImportedEntity):
        gone_at = imported_state(imported)[1]
        return serializers.DateTimeField().to_representation(gone_at) if gone_at else None


class ErrorGroupSerializer(serializers.Serializer):
    """Records of one run that failed at the same stage for the same reason."""

    stage = serializers.CharField()
    reason = serializers.CharField()
    hint = serializers.CharField()
    count = serializers.IntegerField()
    examples = serializers.ListField(
        child=serializers.CharField(), help_text="A few of the repositories' names"
    )


class SyncRunSerializer(serializers.ModelSerializer):
    error_summary = ErrorGroupSerializer(
        many=True, read_only=True, help_text="The record errors grouped, most frequent first"
    )

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "trigger",
            "mode",
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
            "unchanged",
            "errors",
            "error_summary",
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


class StrictBooleanField(serializers.BooleanField):
    """A JSON ``true`` or ``false`` only: DRF's BooleanField would also take ``"yes"`` or ``0``,
    and a full sync costs too much to start on a guess."""

    default_error_messages = {"invalid": "must be true or false", "null": "must be true or false"}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class IntegrationSyncSerializer(serializers.Serializer):
    full = StrictBooleanField(
        required=False,
        default=False,
        help_text=(
            "true: list every repository again now (deletions and rule changes are seen at "
            "once; costs every listing page); default: only what changed since the last "
            "listing, or a full listing when one is due"
        ),
    )


class SyncQueuedSerializer(serializers.Serializer):
    queued = serializers.BooleanField()
    full = serializers.BooleanField(help_text="A full listing was asked for")
    detail = serializers.CharField(help_text="What was started")


# Write-back


class WritebackRequestSerializer(serializers.Serializer):
    discovered_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=1000,
        help_text="The discovered records (repositories) to write catalog-info.yaml to",
    )
    # Plain strings: the service names what is allowed (commit only where the admin picked it).
    mode = serializers.CharField(
        required=False,
        allow_null=True,
        default=None,
        help_text="pull_request or commit; default: the integration's writeback_mode",
    )
    dry_run = StrictBooleanField(
        required=False, default=False, help_text="true: answer the previews, write nothing"
    )
    expected = serializers.DictField(
        child=serializers.CharField(allow_null=True, min_length=40, max_length=40),
        required=False,
        help_text=(
            "discovered id → current_blob of the preview shown (null: no file): a file "
            "changed since is reported, not overwritten"
        ),
    )
    reviewers = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=20,
        help_text="Who reviews the pull requests: Cloud account uuids, Data Center user names",
    )


class WritebackPreviewSerializer(serializers.Serializer):
    discovered_id = serializers.IntegerField(source="discovered.pk")
    repository = serializers.CharField(source="discovered.name")
    entity_ref = serializers.SerializerMethodField()
    path = serializers.CharField()
    current = serializers.CharField(allow_null=True, help_text="null: there is no such file")
    current_blob = serializers.CharField(allow_null=True, help_text="Git blob id of current")
    proposed = serializers.CharField()
    diff = serializers.CharField(help_text="Unified diff from current to proposed")
    unchanged = serializers.BooleanField()
    allowed = serializers.BooleanField()
    reason = serializers.CharField(help_text="Why the write may not go ahead (blank: it may)")

    def get_entity_ref(self, preview) -> str | None:
        return preview.entity.ref if preview.entity is not None else None


class WriteBackSerializer(serializers.ModelSerializer):
    repository = serializers.CharField(source="discovered.name", read_only=True)
    entity_ref = serializers.SerializerMethodField()
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    mode = serializers.CharField(read_only=True, help_text="pull_request or commit")
    state = serializers.CharField(read_only=True, help_text="pending, running, succeeded or failed")
    pull_request_state = serializers.CharField(
        read_only=True, help_text="OPEN, MERGED or DECLINED (blank: no pull request)"
    )

    class Meta:
        model = WriteBack
        fields = [
            "id",
            "integration",
            "batch",
            "discovered",
            "repository",
            "entity",
            "entity_ref",
            "requested_by",
            "requested_at",
            "finished_at",
            "mode",
            "state",
            "path",
            "branch",
            "commit",
            "pull_request_id",
            "pull_request_url",
            "pull_request_state",
            "error",
            "hint",
            "attempts",
        ]
        read_only_fields = fields

    def get_entity_ref(self, write: WriteBack) -> str | None:
        return write.entity.ref if write.entity is not None else None


class WriteBackBatchSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    writes = WriteBackSerializer(many=True, read_only=True)
    mode = serializers.CharField(read_only=True, help_text="pull_request or commit")
    state = serializers.CharField(
        read_only=True, help_text="pending, running, succeeded or failed (any repository failed)"
    )
    done = serializers.IntegerField(
        read_only=True, help_text="Repositories finished, whatever their outcome"
    )
    failed = serializers.IntegerField(read_only=True, help_text="Of those, the ones that failed")

    class Meta:
        model = WriteBackBatch
        fields = [
            "id",
            "integration",
            "requested_by",
            "requested_at",
            "finished_at",
            "mode",
            "state",
            "total",
            "done",
            "failed",
            "reviewers",
            "writes",
        ]
        read_only_fields = fields
