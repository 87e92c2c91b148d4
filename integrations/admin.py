"""Django admin for integrations: configures through the services, never shows a secret.

Connectors and integrations are written by ``services.connector_*`` / ``services.integration_*``
(the same validation as the API and ``apply_config``); the forms pre-check what those services
check so a mistake comes back as an inline form error instead of a server error. What the sync
engine records (runs, discovered and imported entities, pull requests, commits, webhook
deliveries) is read-only here.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models

from catalog.validation import KIND_RE
from integrations import choices, services
from integrations.models import (
    Commit,
    Connector,
    CorrelationRule,
    DiscoveredEntity,
    FieldMapping,
    ImportedEntity,
    Integration,
    PullRequest,
    SyncRun,
    WebhookDelivery,
    WriteBack,
)
from integrations.providers import registry
from integrations.selectors import ACCOUNT_LEVEL_CREATE, change_refusal, user_scope_limited


def _adopt(target: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved object the row a service created (for the log and redirect)."""
    for model_field in saved._meta.concrete_fields:
        setattr(target, model_field.attname, getattr(saved, model_field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


# Django 6 makes https the default scheme of URL form fields; use it now.
URL_FIELD_OVERRIDES = {models.URLField: {"assume_scheme": "https"}}


def _provider_choices() -> list[tuple[str, str]]:
    """Every registered provider; one behind a feature flag that is off says so."""
    choices_ = []
    for key, cls in sorted(registry.all_providers().items()):
        enabled, _ = cls.is_enabled()
        choices_.append((key, cls.name if enabled else f"{cls.name} (not enabled)"))
    return choices_


class AccountLevelChangeMixin:
    """Objects of no scope belong to the whole account: a user whose permission is limited to
    scopes sees them read-only (no change, no delete, no action on them), and cannot create
    one (the scope is required of them)."""

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and change_refusal(user=request.user, obj=obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and change_refusal(user=request.user, obj=obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.scope_required_of_user = user_scope_limited(request.user)
        return form

    def changeable(self, request, queryset):
        """The selected objects an action may change; the account-level ones a scoped user
        selected are left out, with the reason."""
        if not user_scope_limited(request.user):
            return queryset
        skipped = queryset.filter(scope__isnull=True).count()
        if skipped:
            noun = queryset.model._meta.verbose_name_plural
            self.message_user(
                request,
                f"{skipped} {noun} without a scope skipped: they belong to the whole account, "
                "and your permissions are limited to scopes.",
                messages.WARNING,
            )
        return queryset.filter(scope__isnull=False)


def _scope_required_check(form: forms.ModelForm, data: dict, noun: str) -> None:
    """A user limited to scopes gives every object one of their scopes."""
    if getattr(form, "scope_required_of_user", False) and data.get("scope") is None:
        if "scope" in form.fields:
            form.add_error("scope", ACCOUNT_LEVEL_CREATE.format(noun=noun))


# Connectors


class SecretTextarea(forms.Textarea):
    """Renders empty, always: stored secrets are never shown and what was typed is not echoed
    back into the page when the form has an error."""

    def format_value(self, value):
        return None


class ConnectorAdminForm(forms.ModelForm):
    provider = forms.ChoiceField(choices=_provider_choices)
    auth_kind = forms.ChoiceField(
        choices=lambda: [("", "---------"), *registry.auth_kind_choices()], label="Auth kind"
    )
    base_url = forms.URLField(required=False, max_length=500, assume_scheme="https")
    new_secrets = forms.CharField(
        required=False,
        label="New secrets",
        widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            'A JSON object, e.g. {"token": "…"} or {"tokens": ["…", "…"]}. Replaces every stored '
            "secret; leave blank to keep them. Stored secrets are never displayed."
        ),
    )
    new_proxy_url = forms.CharField(
        required=False,
        max_length=500,
        label="New proxy URL",
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text=(
            "http(s)://[user:password@]host:port for this connector's requests; leave blank to "
            "keep the stored one (blank and none stored: HTTPS_PROXY / HTTP_PROXY / NO_PROXY). "
            'Timeouts go in config: "connect_timeout", "read_timeout" (seconds, at most 300).'
        ),
    )
    remove_proxy = forms.BooleanField(required=False, label="Remove the connector's proxy")

    class Meta:
        model = Connector
        fields = ["name", "provider", "auth_kind", "base_url", "scope", "config", "ca_pem"]

    def clean_new_secrets(self) -> dict | None:
        raw = self.cleaned_data.get("new_secrets") or ""
        if not raw.strip():
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:  # the message gives a position, never the text
            raise ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict) or not all(
            isinstance(item, str)
            or (isinstance(item, list) and all(isinstance(i, str) for i in item))
            for item in value.values()
        ):
            raise ValidationError("Must be a JSON object of strings (or lists of strings).")
        return value

    def clean(self) -> dict:
        data = super().clean()
        _scope_required_check(self, data, "A connector")
        provider_key = data.get("provider") or self.instance.provider
        auth_kind = data.get("auth_kind")
        if not provider_key or not auth_kind:
            return data
        # What services.connector_create/_update check, as form errors (on a change, what is
        # not changed is checked as stored, as connector_update does).
        instance = self.instance if self.instance.pk else None
        changed = self.changed_data if instance is not None else list(self.fields)
        secrets = data.get("new_secrets")
        try:
            services.connector_validate(
                provider=provider_key,
                auth_kind=auth_kind,
                secrets=secrets if instance is not None or secrets is not None else {},
                base_url=(data.get("base_url") or "") if "base_url" in changed else None,
                config=(data.get("config") or {}) if "config" in changed else None,
                ca_pem=(data.get("ca_pem") or "") if "ca_pem" in changed else None,
                proxy_url=data.get("new_proxy_url") or None,
                instance=instance,
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                field = {"secrets": "new_secrets", "proxy_url": "new_proxy_url"}.get(field, field)
                field = "config" if field.startswith("config.") else field
                for message in messages:
                    self.add_error(field if field in self.fields else None, message)
        return data


class AuthKindFilter(admin.SimpleListFilter):
    """The auth kinds the registered providers declare, by label."""

    title = "auth kind"
    parameter_name = "auth_kind__exact"

    def lookups(self, request, model_admin):
        return registry.auth_kind_choices()

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(auth_kind=value) if value else queryset


@admin.register(Connector)
class ConnectorAdmin(AccountLevelChangeMixin, admin.ModelAdmin):
    form = ConnectorAdminForm
    formfield_overrides = URL_FIELD_OVERRIDES
    list_display = (
        "name",
        "provider",
        "auth_kind_label",
        "health",
        "secrets_stored",
        "last_checked_at",
        "last_success_at",
    )
    list_filter = ("provider", AuthKindFilter, "health")
    search_fields = ("name", "base_url")
    list_select_related = ("scope",)
    autocomplete_fields = ("scope",)
    readonly_fields = (
        "secrets_stored",
        "proxy_shown",
        "health",
        "last_error",
        "last_checked_at",
        "last_success_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("name", "provider", "auth_kind", "base_url", "scope")}),
        ("Credentials", {"fields": ("secrets_stored", "new_secrets")}),
        ("Settings", {"fields": ("config", "ca_pem")}),
        ("Network", {"fields": ("proxy_shown", "new_proxy_url", "remove_proxy")}),
        ("Health", {"fields": ("health", "last_error", "last_checked_at", "last_success_at")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="Auth kind", ordering="auth_kind")
    def auth_kind_label(self, obj: Connector) -> str:
        return dict(registry.auth_kind_choices()).get(obj.auth_kind, obj.auth_kind)

    @admin.display(description="Proxy")
    def proxy_shown(self, obj: Connector) -> str:
        return obj.proxy_display or "— (the environment's HTTPS_PROXY / HTTP_PROXY, if any)"

    @admin.display(boolean=True, description="Secrets stored")
    def secrets_stored(self, obj: Connector) -> bool:
        return obj.has_secrets

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, self.changeable(request, queryset))

    def get_readonly_fields(self, request, obj=None):
        # A connector's provider is fixed once created (connector_update refuses it).
        readonly = self.readonly_fields
        return (*readonly, "provider") if obj is not None else readonly

    def save_model(self, request, obj: Connector, form, change: bool) -> None:
        data = form.cleaned_data
        secrets = data.get("new_secrets")
        if change:
            updatable = ("name", "auth_kind", "base_url", "config", "ca_pem", "scope")
            values = {key: data[key] for key in updatable if key in form.changed_data}
            if data.get("new_proxy_url") or data.get("remove_proxy"):
                values["proxy_url"] = "" if data.get("remove_proxy") else data["new_proxy_url"]
            services.connector_update(connector=obj, secrets=secrets, **values)
            return
        saved = services.connector_create(
            name=data["name"],
            provider=data["provider"],
            auth_kind=data["auth_kind"],
            secrets=secrets,
            base_url=data.get("base_url") or "",
            config=data.get("config") or {},
            ca_pem=data.get("ca_pem") or "",
            proxy_url=data.get("new_proxy_url") or "",
            scope=data.get("scope"),
        )
        _adopt(obj, saved)


# Integrations


class CorrelationRuleForm(forms.ModelForm):
    class Meta:
        model = CorrelationRule
        fields = ("ingested_path", "operator", "catalog_path", "position")

    def clean(self) -> dict:
        data = super().clean()
        for name in ("ingested_path", "catalog_path"):
            if data.get(name):
                try:
                    services.expression_validate(data[name], name)
                except ValidationError as exc:
                    self.add_error(None, exc)
        return data


class FieldMappingForm(forms.ModelForm):
    class Meta:
        model = FieldMapping
        fields = ("catalog_path", "expression", "position")

    def clean(self) -> dict:
        data = super().clean()
        if data.get("catalog_path"):
            try:
                services.catalog_path_validate(data["catalog_path"], "catalog_path")
            except ValidationError as exc:
                self.add_error(None, exc)
        if data.get("expression"):
            try:
                services.expression_validate(data["expression"], "expression")
            except ValidationError as exc:
                self.add_error(None, exc)
        return data


class CorrelationRuleInline(admin.TabularInline):
    model = CorrelationRule
    form = CorrelationRuleForm
    extra = 0
    verbose_name_plural = "correlation rules (none on a new integration: name → metadata.name)"


class FieldMappingInline(admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    extra = 0
    verbose_name_plural = "field mappings (none on a new integration: the provider's defaults)"


class IntegrationAdminForm(forms.ModelForm):
    secondary_kinds = forms.MultipleChoiceField(
        choices=choices.SecondaryKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=list(services.DEFAULT_SECONDARY_KINDS),
        help_text="Frozen once the integration is created.",
    )

    class Meta:
        model = Integration
        fields = list(services.INTEGRATION_SETTINGS)

    def clean(self) -> dict:
        data = super().clean()
        _scope_required_check(self, data, "An integration")
        # What services.integration_create/_update check, as form errors.
        if data.get("registration") == choices.Registration.MERGE:
            data["entity_type"] = ""  # not configurable when only merging
        kind = data.get("entity_kind")
        if kind and not KIND_RE.match(kind):
            self.add_error("entity_kind", f"{kind!r} is not a valid kind")
        labels = data.get("labels")
        if labels is not None and (
            not isinstance(labels, list) or not all(isinstance(label, str) for label in labels)
        ):
            self.add_error("labels", "Must be a JSON list of strings.")
        threshold = data.get("vanish_threshold")
        if threshold is not None and not 0 < threshold <= 1:
            self.add_error("vanish_threshold", "Must be a number in (0, 1].")
        connector = data.get("connector")
        if connector is None:
            return data
        if self.instance.pk and connector.provider != self.instance.provider:
            self.add_error("connector", "The connector must be of the same provider.")
        target = data.get("target")
        if target in (None, ""):
            data["target"] = target = {}
        if not isinstance(target, dict):
            self.add_error("target", "Must be a JSON object.")
            return data
        try:
            provider_class = services.provider_class_get(connector.provider, "connector")
        except ValidationError as exc:  # unknown, or behind a feature flag that is off
            for message in exc.message_dict.get("connector", exc.messages):
                self.add_error("connector", message)
            return data
        for key, message in provider_class.validate_target(target).items():
            self.add_error("target", f"{key}: {message}")
        return data


def _inline_rows(formset) -> list[dict]:
    """The kept rows of an inline formset, in position order."""
    rows = [
        (form.cleaned_data.get("position") or 0, index, form.cleaned_data)
        for index, form in enumerate(formset.forms)
        if form.cleaned_data and not form.cleaned_data.get("DELETE")
    ]
    return [data for _, _, data in sorted(rows, key=lambda row: row[:2])]


def _record_formset_changes(formset) -> None:
    """What ``formset.save()`` would have recorded, for the admin's change message."""
    deleted = [form for form in formset.initial_forms if formset._should_delete_form(form)]
    formset.deleted_objects = [form.instance for form in deleted]
    formset.new_objects = [
        form.instance
        for form in formset.extra_forms
        if form.has_changed() and not formset._should_delete_form(form)
    ]
    formset.changed_objects = [
        (form.instance, form.changed_data)
        for form in formset.initial_forms
        if form.has_changed() and form not in deleted
    ]


@admin.register(Integration)
class IntegrationAdmin(AccountLevelChangeMixin, admin.ModelAdmin):
    form = IntegrationAdminForm
    inlines = [CorrelationRuleInline, FieldMappingInline]
    list_display = (
        "name",
        "provider",
        "connector",
        "scope",
        "state",
        "registration",
        "auto_import",
        "last_sync_at",
        "next_sync_at",
    )
    list_filter = ("state", "provider", "registration", "auto_import", "connector")
    search_fields = ("name", "description")
    list_select_related = ("connector", "scope")
    autocomplete_fields = ("connector", "scope")
    readonly_fields = ("provider", "last_sync_at", "next_sync_at", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "description", "labels", "scope", "state")}),
        ("Source", {"fields": ("provider", "connector", "target")}),
        (
            "Catalog",
            {"fields": ("registration", "entity_kind", "entity_type", "auto_import")},
        ),
        (
            "Sync",
            {
                "fields": (
                    "secondary_kinds",
                    "update_frequency",
                    "start_date",
                    "vanish_threshold",
                    "last_sync_at",
                    "next_sync_at",
                )
            },
        ),
    )
    actions = ["sync_now", "suspend", "resume"]

    def get_readonly_fields(self, request, obj=None):
        readonly = self.readonly_fields
        return (*readonly, "secondary_kinds") if obj is not None else readonly

    def save_model(self, request, obj: Integration, form, change: bool) -> None:
        """Nothing yet: the service writes the integration with its rules in save_related."""

    def save_related(self, request, form, formsets, change: bool) -> None:
        data = form.cleaned_data
        values = {key: data[key] for key in form.Meta.fields if key in data and key != "name"}
        if change:
            values = {key: value for key, value in values.items() if key in form.changed_data}
            if "name" in form.changed_data:
                values["name"] = data["name"]
        for formset in formsets:
            rows = _inline_rows(formset)
            if change and not formset.has_changed():
                continue
            if not change and not rows:
                continue  # the services' defaults
            if formset.model is CorrelationRule:
                values["correlation"] = [
                    {
                        "ingested": row["ingested_path"],
                        "catalog": row["catalog_path"],
                        "operator": row["operator"],
                    }
                    for row in rows
                ]
            elif formset.model is FieldMapping:
                values["field_mappings"] = {row["catalog_path"]: row["expression"] for row in rows}
        if change:
            values.pop("secondary_kinds", None)  # frozen
            if values:
                services.integration_update(integration=form.instance, **values)
        else:
            saved = services.integration_create(name=data["name"], **values)
            _adopt(form.instance, saved)
        for formset in formsets:
            _record_formset_changes(formset)

    def get_deleted_objects(self, objs, request):
        """The engine's records go with their integration: deleting it needs no permission on
        them (they are read-only in the admin, so nobody holds one)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        records = {str(model._meta.verbose_name) for model in RECORD_MODELS}
        return deleted, counts, perms_needed - records, protected

    def delete_model(self, request, obj: Integration) -> None:
        services.integration_delete(integration=obj)

    def delete_queryset(self, request, queryset) -> None:
        for integration in self.changeable(request, queryset):
            services.integration_delete(integration=integration)

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request, queryset) -> None:
        queryset = self.changeable(request, queryset)
        enabled = list(queryset.filter(state=choices.IntegrationState.ENABLED))
        for integration in enabled:
            services.integration_sync_request(integration=integration, user=request.user)
        self.message_user(request, f"Sync queued for {len(enabled)} integration(s).")
        suspended = queryset.count() - len(enabled)
        if suspended:
            self.message_user(
                request,
                f"{suspended} suspended integration(s) skipped: resume them first.",
                messages.WARNING,
            )

    @admin.action(description="Suspend", permissions=["change"])
    def suspend(self, request, queryset) -> None:
        count = 0
        for integration in self.changeable(request, queryset).filter(
            state=choices.IntegrationState.ENABLED
        ):
            services.integration_suspend(integration=integration)
            count += 1
        self.message_user(request, f"{count} integration(s) suspended.")

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request, queryset) -> None:
        count = 0
        for integration in self.changeable(request, queryset).filter(
            state=choices.IntegrationState.SUSPENDED
        ):
            services.integration_resume(integration=integration)
            count += 1
        self.message_user(request, f"{count} integration(s) resumed.")


# What the engine records: read-only

RECORD_MODELS = (SyncRun, DiscoveredEntity, ImportedEntity, PullRequest, Commit, WebhookDelivery)


class RecordAdmin(admin.ModelAdmin):
    """Viewable, never edited here: these rows are the sync engine's record."""

    show_full_result_count = False
    list_per_page = 50
    formfield_overrides = URL_FIELD_OVERRIDES

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_import_permission(self, request) -> bool:
        return request.user.has_perm("integrations.edit_integration")


@admin.register(SyncRun)
class SyncRunAdmin(RecordAdmin):
    list_display = (
        "integration",
        "trigger",
        "state",
        "started_at",
        "finished_at",
        "discovered",
        "imported",
        "refreshed",
        "gone",
        "pull_requests",
        "commits",
        "requests",
        "flagged",
    )
    list_filter = ("state", "trigger", "flagged", "integration")
    list_select_related = ("integration",)


@admin.register(WriteBack)
class WriteBackAdmin(RecordAdmin):
    """Who wrote which repository's catalog-info.yaml back, and what came of it."""

    list_display = (
        "discovered",
        "integration",
        "mode",
        "state",
        "pull_request_state",
        "requested_by",
        "requested_at",
        "finished_at",
    )
    list_filter = ("state", "mode", "pull_request_state", "integration")
    list_select_related = ("discovered", "integration", "requested_by")
    search_fields = ("discovered__name", "commit", "pull_request_id")


@admin.register(DiscoveredEntity)
class DiscoveredEntityAdmin(RecordAdmin):
    list_display = (
        "name",
        "integration",
        "state",
        "recommended_action",
        "suggested_entity",
        "kind",
        "type",
        "last_seen_at",
    )
    list_filter = ("integration", "state", "recommended_action")
    search_fields = ("name", "external_id")
    list_select_related = ("integration", "suggested_entity")
    actions = ["import_recommended"]

    @admin.action(description="Import (recommended action)", permissions=["import"])
    def import_recommended(self, request, queryset) -> None:
        by_integration: dict[int, list[int]] = {}
        for discovered_id, integration_id in queryset.values_list("pk", "integration_id"):
            by_integration.setdefault(integration_id, []).append(discovered_id)
        imported, refused = 0, []
        for integration in Integration.objects.filter(pk__in=by_integration):
            results = services.discovered_import_many(
                integration=integration,
                requests=[
                    services.ImportRequest(discovered_id=pk)
                    for pk in by_integration[integration.pk]
                ],
                user=request.user,
            )
            imported += sum(1 for _, result, _ in results if result is not None)
            refused += [error for _, result, error in results if result is None]
        self.message_user(request, f"{imported} imported.")
        for error in refused[:10]:
            self.message_user(request, error, messages.WARNING)


@admin.register(ImportedEntity)
class ImportedEntityAdmin(RecordAdmin):
    list_display = (
        "entity",
        "discovered",
        "integration",
        "action",
        "state",
        "imported_at",
        "imported_by",
    )
    list_filter = ("integration", "action", "state")
    search_fields = ("entity__name", "discovered__name")
    list_select_related = ("entity", "discovered", "integration", "imported_by")
    actions = ["unlink"]

    @admin.action(description="Unlink (stop syncing; the entity stays)", permissions=["import"])
    def unlink(self, request, queryset) -> None:
        count = 0
        for imported in queryset.filter(state=choices.LinkState.LINKED):
            services.imported_unlink(imported=imported)
            count += 1
        self.message_user(request, f"{count} unlinked.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordAdmin):
    list_display = ("delivery_id", "event", "integration", "outcome", "received_at", "processed_at")
    list_filter = ("outcome", "event", "integration")
    search_fields = ("delivery_id", "event")
    list_select_related = ("integration",)


@admin.register(PullRequest)
class PullRequestAdmin(RecordAdmin):
    list_display = ("__str__", "discovered", "integration", "state", "author", "updated_on")
    list_filter = ("state", "discovered__integration")
    search_fields = ("title", "author", "external_id", "discovered__name")
    list_select_related = ("discovered__integration",)

    @admin.display(ordering="discovered__integration__name")
    def integration(self, obj: PullRequest) -> Integration:
        return obj.discovered.integration


@admin.register(Commit)
class CommitAdmin(RecordAdmin):
    list_display = ("__str__", "summary", "discovered", "integration", "author", "date")
    list_filter = ("discovered__integration",)
    search_fields = ("hash", "message", "author", "discovered__name")
    list_select_related = ("discovered__integration",)

    @admin.display(description="message")
    def summary(self, obj: Commit) -> str:
        first_line = obj.message.splitlines()[0] if obj.message else ""
        return first_line[:80]

    @admin.display(ordering="discovered__integration__name")
    def integration(self, obj: Commit) -> Integration:
        return obj.discovered.integration
