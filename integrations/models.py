"""Integrations: where repositories come from, how they map into the catalog, what was synced."""

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from catalog.models import Entity, Scope
from integrations import choices
from integrations.crypto import decrypt_json, encrypt_json, encrypted_value


class Connector(models.Model):
    """Credentials and address of one Bitbucket account or instance.

    Secrets live only in ``secrets_encrypted`` (Fernet); :attr:`secrets` decrypts on demand and
    nothing ever renders them back.
    """

    name = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=50)
    # One of the auth kinds the registered providers declare (services check it).
    auth_kind = models.CharField(max_length=40)
    base_url = models.URLField(max_length=500, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings (email…)")
    secrets_encrypted = models.TextField(blank=True, editable=False)
    ca_pem = models.TextField(blank=True, help_text="Private CA certificate (PEM), Data Center")
    # The connector's own HTTP(S) proxy, encrypted: its URL may carry user:password@.
    proxy_url_encrypted = models.TextField(blank=True, editable=False)
    scope = models.ForeignKey(Scope, null=True, blank=True, on_delete=models.PROTECT)
    health = models.CharField(
        max_length=10, choices=choices.Health.choices, default=choices.Health.UNKNOWN
    )
    last_error = models.TextField(blank=True)
    # ``health`` is the last credential outcome (a probe, a sync, a token refresh), checked at
    # ``last_checked_at``; ``last_success_at`` is when the credential last worked.
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def secrets(self) -> dict:
        return decrypt_json(self.secrets_encrypted)

    @secrets.setter
    def secrets(self, value: dict) -> None:
        self.secrets_encrypted = encrypt_json(value) if value else ""

    @property
    def has_secrets(self) -> bool:
        return bool(self.secrets_encrypted)

    proxy_url = encrypted_value(
        "proxy_url_encrypted",
        "url",
        "The connector's own proxy (blank: the environment's HTTPS_PROXY/HTTP_PROXY).",
    )

    @property
    def proxy_display(self) -> str:
        """The proxy URL with its password masked, or blank: what any page may show."""
        return proxy_url_masked(self.proxy_url)


def proxy_url_masked(url: str) -> str:
    """``http://user:secret@proxy:3128`` → ``http://user:***@proxy:3128``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class RequestBudgetUsage(models.Model):
    """Requests one credential made in one clock hour, counted by every process of every host
    (the shared request budget's store when there is no Redis broker)."""

    budget_key = models.CharField(max_length=200)
    window = models.BigIntegerField(help_text="Hours since the epoch")
    used = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget_key", "window"], name="budget_key_window")
        ]

    def __str__(self) -> str:
        return f"{self.budget_key} @ {self.window}: {self.used}"


class Integration(models.Model):
    """One provider account (a workspace, or Data Center projects) feeding the catalog."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, help_text="Markdown")
    labels = models.JSONField(default=list, blank=True)
    scope = models.ForeignKey(
        Scope, null=True, blank=True, on_delete=models.PROTECT, related_name="integrations"
    )
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="integrations")
    provider = models.CharField(max_length=50, editable=False)
    target = models.JSONField(
        default=dict, blank=True, help_text="What to discover: workspace, projects, pattern"
    )
    registration = models.CharField(
        max_length=30,
        choices=choices.Registration.choices,
        default=choices.Registration.REGISTER_AND_MERGE,
    )
    entity_kind = models.CharField(max_length=63, default="Component")
    entity_type = models.CharField(max_length=63, default="service", blank=True)
    secondary_kinds = models.JSONField(default=list, blank=True)
    update_frequency = models.PositiveIntegerField(
        choices=choices.UPDATE_FREQUENCY_CHOICES, default=choices.DEFAULT_UPDATE_FREQUENCY
    )
    start_date = models.DateField(null=True, blank=True)
    auto_import = models.BooleanField(default=False)
    state = models.CharField(
        max_length=10,
        choices=choices.IntegrationState.choices,
        default=choices.IntegrationState.ENABLED,
    )
    vanish_threshold = models.FloatField(
        default=0.5, help_text="Largest share of records that may vanish in one run"
    )
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    # Whether Lantern registered its hook on the provider, or why a person must do it.
    webhook_registration = models.CharField(
        max_length=12, choices=choices.WebhookRegistration.choices, blank=True, editable=False
    )
    webhook_registration_detail = models.TextField(blank=True, editable=False)
    # Deliveries refused before anything was stored (bad signature, oversized body).
    webhook_rejected_count = models.PositiveIntegerField(default=0, editable=False)
    full_sync_interval = models.PositiveIntegerField(
        default=1440,
        help_text="Minutes between full listings (deletions, renames) and PR sweeps",
    )
    writeback_mode = models.CharField(
        max_length=20,
        choices=choices.WritebackMode.choices,
        default=choices.WritebackMode.PULL_REQUEST,
        help_text="How catalog-info.yaml is written back (direct commits only if picked)",
    )
    next_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    # Start of the last successful listing: incremental runs ask for what changed since.
    last_listing_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_full_sync_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The sync claim: which run holds the integration and until when (a crashed worker's
    # claim expires instead of locking the integration forever).
    locked_by_run = models.BigIntegerField(null=True, blank=True, editable=False)
    locked_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("edit_integration", "Can create, edit, import into and delete integrations"),
            ("write_back", "Can write catalog-info.yaml back to repositories"),
        ]
        indexes = [models.Index(fields=["state", "next_sync_at"], name="integration_due")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if not set(self.secondary_kinds) <= set(choices.SecondaryKind.values):
            errors["secondary_kinds"] = "Unknown secondary kind."
        today = timezone.localdate()
        if self.start_date and self.start_date > today:
            errors["start_date"] = (
                f"{self.start_date.isoformat()} is in the future: nothing would be ingested "
                f"until then. Pick {today.isoformat()} or earlier, or leave it empty for all "
                "history."
            )
        if errors:
            raise ValidationError(errors)

    webhook_secret = encrypted_value("webhook_secret_encrypted", "secret")

    @property
    def is_enabled(self) -> bool:
        return self.state == choices.IntegrationState.ENABLED

    @property
    def webhook_url(self) -> str:
        """Where the provider posts deliveries (by id, so renaming never breaks it)."""
        base = settings.LANTERN_PUBLIC_URL.rstrip("/")
        return f"{base}/webhooks/{self.provider.replace('_', '-')}/{self.pk}"


class WebhookSubscription(models.Model):
    """One Bitbucket webhook shared by every integration whose target is on its subject.

    Bitbucket delivers each event once per hook, so seven integrations on one workspace with a
    hook each would receive every event seven times. Lantern registers one hook per subject
    instead — a Cloud workspace, a Data Center project, or a Data Center repository when an
    integration covers every project — with one secret, and the intake routes each delivery
    to the integrations it concerns. ``scope_key`` names the subject (``workspace:<slug>``,
    ``project:<KEY>``, ``repository:<KEY>/<slug>``); ``host`` is the connector's base URL
    (empty: the provider's default), so two instances never share a row.
    """

    provider = models.CharField(max_length=50)
    host = models.CharField(max_length=500, blank=True)
    scope_key = models.CharField(max_length=400)
    secret_encrypted = models.TextField(blank=True, editable=False)
    events = models.JSONField(default=list, blank=True)
    integrations = models.ManyToManyField(
        Integration, blank=True, related_name="webhook_subscriptions"
    )
    registration = models.CharField(
        max_length=12, choices=choices.WebhookRegistration.choices, blank=True, editable=False
    )
    registration_detail = models.TextField(blank=True, editable=False)
    remote_id = models.CharField(max_length=200, blank=True, editable=False)
    registered_at = models.DateTimeField(null=True, blank=True, editable=False)
    rejected_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "host", "scope_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "host", "scope_key"], name="webhook_subscription_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.host or 'default'} {self.scope_key}"

    secret = encrypted_value("secret_encrypted", "secret")

    @property
    def url(self) -> str:
        """Where the provider posts this subscription's deliveries."""
        base = settings.LANTERN_PUBLIC_URL.rstrip("/")
        return f"{base}/webhooks/{self.provider.replace('_', '-')}/subscriptions/{self.pk}"


class CorrelationRule(models.Model):
    """How a discovered record finds its catalog entity: JMESPath on each side, compared."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="correlation_rules"
    )
    ingested_path = models.CharField(max_length=500)
    catalog_path = models.CharField(max_length=500)
    operator = models.CharField(
        max_length=10, choices=choices.Operator.choices, default=choices.Operator.EQUALS
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["integration", "position", "pk"]

    def __str__(self) -> str:
        return f"{self.ingested_path} {self.operator} {self.catalog_path}"


class FieldMapping(models.Model):
    """A catalog path filled from a JMESPath expression over the discovered record."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="field_mappings"
    )
    catalog_path = models.CharField(max_length=500)
    expression = models.CharField(max_length=500)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["integration", "position", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "catalog_path"], name="field_mapping_unique_path"
            )
        ]

    def __str__(self) -> str:
        return f"{self.catalog_path} ← {self.expression}"


class DiscoveredEntity(models.Model):
    """A repository found by an integration, with the provider's record and our advice."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="discovered"
    )
    external_id = models.CharField(max_length=200)
    name = models.CharField(max_length=255)
    data = models.JSONField(default=dict)
    kind = models.CharField(max_length=63)
    type = models.CharField(max_length=63, blank=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    recommended_action = models.CharField(
        max_length=10,
        choices=choices.RecommendedAction.choices,
        default=choices.RecommendedAction.REGISTER,
    )
    suggested_entity = models.ForeignKey(
        Entity, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    match_candidates = models.JSONField(default=list, blank=True)
    state = models.CharField(
        max_length=12,
        choices=choices.DiscoveredState.choices,
        default=choices.DiscoveredState.DISCOVERED,
    )
    # Per secondary kind: how far ingestion got (window, gaps, backfill) — see engine.secondary.
    secondary_state = models.JSONField(default=dict, blank=True)
    # With recommended action ``conflict``: the catalog entity that holds the name a Register
    # would take.
    name_holder = models.ForeignKey(
        Entity, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What failed the last time this record was handled, by stage (engine.processing): each
    # {message, hint, at, run_id}, kept until that stage succeeds. ``error_since`` is the oldest
    # of them (null: nothing failed), so "needs attention" is an index lookup.
    processing_errors = models.JSONField(default=dict, blank=True)
    error_since = models.DateTimeField(null=True, blank=True)
    # When a full listing first missed the repository (state ``gone``).
    gone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["integration", "name"]
        verbose_name_plural = "discovered entities"
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "external_id"], name="discovered_unique_external_id"
            )
        ]
        indexes = [
            models.Index(fields=["integration", "state", "name"], name="discovered_state"),
            models.Index(fields=["integration", "recommended_action"], name="discovered_action"),
            models.Index(fields=["integration", "last_seen_at"], name="discovered_seen"),
            models.Index(
                fields=["integration", "error_since"],
                condition=Q(error_since__isnull=False),
                name="discovered_needs_attention",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def needs_attention(self) -> bool:
        return self.error_since is not None


class ImportedEntity(models.Model):
    """The link between a discovered record and the catalog entity it registered or merged into."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="imported")
    discovered = models.ForeignKey(
        DiscoveredEntity, on_delete=models.CASCADE, related_name="imports"
    )
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="imports")
    action = models.CharField(max_length=10, choices=choices.ImportAction.choices)
    state = models.CharField(
        max_length=10, choices=choices.LinkState.choices, default=choices.LinkState.LINKED
    )
    # Set on creation unless given: a registration writes it into the entity's links first.
    imported_at = models.DateTimeField(default=timezone.now, editable=False)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    unlinked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "imported entities"
        ordering = ["-imported_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["discovered"],
                condition=Q(state="linked"),
                name="imported_one_link_per_discovered",
            )
        ]
        indexes = [
            models.Index(fields=["integration", "state"], name="imported_state"),
            models.Index(fields=["entity", "state"], name="imported_entity_state"),
        ]

    def __str__(self) -> str:
        return f"{self.discovered} → {self.entity}"


class PullRequest(models.Model):
    discovered = models.ForeignKey(
        DiscoveredEntity, on_delete=models.CASCADE, related_name="pull_requests"
    )
    external_id = models.CharField(max_length=100)
    title = models.CharField(max_length=500)
    state = models.CharField(max_length=30)
    author = models.CharField(max_length=255, blank=True)
    source_branch = models.CharField(max_length=255, blank=True)
    destination_branch = models.CharField(max_length=255, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    created_on = models.DateTimeField(null=True, blank=True)
    updated_on = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-updated_on", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["discovered", "external_id"], name="pull_request_unique"
            )
        ]
        indexes = [models.Index(fields=["discovered", "-updated_on"], name="pull_request_recent")]

    def __str__(self) -> str:
        return f"#{self.external_id} {self.title}"


class Commit(models.Model):
    discovered = models.ForeignKey(
        DiscoveredEntity, on_delete=models.CASCADE, related_name="commits"
    )
    hash = models.CharField(max_length=64)
    message = models.TextField(blank=True)
    author = models.CharField(max_length=255, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    date = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-date", "-pk"]
        constraints = [models.UniqueConstraint(fields=["discovered", "hash"], name="commit_unique")]
        indexes = [models.Index(fields=["discovered", "-date"], name="commit_recent")]

    def __str__(self) -> str:
        return self.hash[:12]


class SyncRun(models.Model):
    """One sync of one integration: what triggered it, how far it got, what it counted."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=choices.SyncTrigger.choices)
    mode = models.CharField(
        max_length=12, choices=choices.SyncMode.choices, default=choices.SyncMode.FULL
    )
    state = models.CharField(
        max_length=10, choices=choices.SyncState.choices, default=choices.SyncState.RUNNING
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    discovered = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    refreshed = models.PositiveIntegerField(default=0)
    gone = models.PositiveIntegerField(default=0)
    pull_requests = models.PositiveIntegerField(default=0)
    commits = models.PositiveIntegerField(default=0)
    # Repositories a re-sync skipped because the provider showed them unchanged.
    unchanged = models.PositiveIntegerField(default=0)
    # Records that could not be handled, and why: [{stage, reason, hint, count, examples}].
    errors = models.PositiveIntegerField(default=0)
    error_summary = models.JSONField(default=list, blank=True)
    flagged = models.BooleanField(default=False)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["integration", "-started_at"], name="sync_run_recent")]

    def __str__(self) -> str:
        return f"{self.integration} {self.trigger} {self.state}"


class WebhookDelivery(models.Model):
    """One signed delivery from the provider, recorded once per provider delivery id.

    The payload itself is not kept: it is only a hint of which repository changed, and the task
    re-reads that repository from the API.
    """

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    delivery_id = models.CharField(max_length=200)
    event = models.CharField(max_length=100)
    repository_external_id = models.CharField(max_length=200, blank=True)
    repository_name = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=30,
        choices=choices.WebhookOutcome.choices,
        default=choices.WebhookOutcome.QUEUED,
    )
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "delivery_id"], name="webhook_delivery_unique"
            )
        ]
        indexes = [
            models.Index(fields=["integration", "-received_at"], name="webhook_delivery_recent"),
            models.Index(
                fields=["integration", "received_at"],
                condition=Q(outcome="coalesced"),
                name="webhook_delivery_coalesced",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.delivery_id}"

    @property
    def latency(self):
        """Time from receipt to the end of processing (``None`` while queued)."""
        return self.processed_at - self.received_at if self.processed_at else None


class WriteBackBatch(models.Model):
    """One request to write catalog-info.yaml back to one or more repositories, run as a task.

    ``done`` counts the repositories finished whatever their outcome, ``failed`` those of them
    that failed: progress is ``done`` of ``total``."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="writeback_batches"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    mode = models.CharField(max_length=20, choices=choices.WritebackMode.choices)
    state = models.CharField(
        max_length=10,
        choices=choices.WritebackState.choices,
        default=choices.WritebackState.PENDING,
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Who is asked to review the pull requests (provider account ids: Cloud uuids, Data Center
    # user names); empty for direct commits.
    reviewers = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        verbose_name = "write-back batch"
        verbose_name_plural = "write-back batches"
        indexes = [
            models.Index(fields=["integration", "-requested_at"], name="writeback_batch_recent")
        ]

    def __str__(self) -> str:
        return f"{self.integration} write-back {self.pk} ({self.state})"


class WriteBack(models.Model):
    """One repository's write-back: who asked, when, what was written (commit, pull request)
    or why not (``error`` and a ``hint`` saying what to do), and the pull request's state as
    the sync and the webhooks see it afterwards."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="writebacks"
    )
    discovered = models.ForeignKey(
        DiscoveredEntity, on_delete=models.CASCADE, related_name="writebacks"
    )
    entity = models.ForeignKey(
        Entity, null=True, blank=True, on_delete=models.SET_NULL, related_name="writebacks"
    )
    batch = models.ForeignKey(WriteBackBatch, on_delete=models.CASCADE, related_name="writes")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    mode = models.CharField(max_length=20, choices=choices.WritebackMode.choices)
    state = models.CharField(
        max_length=10,
        choices=choices.WritebackState.choices,
        default=choices.WritebackState.PENDING,
    )
    path = models.CharField(max_length=500, default="catalog-info.yaml")
    # The git blob id of the file as the preview showed it ("" unknown: read when writing;
    # ``expected_absent``: there was no file). A file changed since is reported, not overwritten.
    expected_blob = models.CharField(max_length=40, blank=True)
    expected_absent = models.BooleanField(default=False)
    branch = models.CharField(max_length=255, blank=True)
    commit = models.CharField(max_length=64, blank=True)
    pull_request_id = models.CharField(max_length=100, blank=True)
    pull_request_url = models.URLField(max_length=1000, blank=True)
    pull_request_state = models.CharField(
        max_length=10, choices=choices.PullRequestState.choices, blank=True
    )
    error = models.TextField(blank=True)
    hint = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        verbose_name = "write-back"
        indexes = [
            models.Index(fields=["entity", "requested_at"], name="writeback_entity"),
            models.Index(fields=["integration", "requested_at"], name="writeback_integration"),
            models.Index(
                fields=["discovered", "pull_request_id"],
                condition=~Q(pull_request_id=""),
                name="writeback_pull_request",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.discovered} {self.path} ({self.state})"
