"""Forms of the integrations UI. They check shapes and turn input into service arguments; every
rule about values stays in :mod:`integrations.services` (which the views call), and the errors it
raises are put back on the fields they name with :func:`apply_service_errors`."""

from dataclasses import dataclass

from django import forms
from django.core.exceptions import ValidationError

from catalog.selectors import entities_visible, entity_spec_types
from catalog.validation import KIND_RE, KNOWN_KINDS
from integrations import choices, services
from integrations.engine.mapping import ExpressionError, catalog_path_parts, compile_expression
from integrations.models import Connector, Integration
from integrations.providers import registry
from integrations.selectors import (
    ACCOUNT_LEVEL_CREATE,
    connectors_visible,
    scopes_assignable,
    user_scope_limited,
)


def auth_fields(auth_kind: str) -> tuple[str | None, str | None, str | None]:
    """``(label of the identity field or None, config key, secret key)`` of an auth kind, from
    its provider's spec: the wizard's identity field writes the config key, its secret field
    the secret key."""
    spec = registry.auth_kinds().get(auth_kind)
    if spec is None:
        return None, None, None
    return spec.identity_label, spec.identity_field, spec.form_secret_field


def provider_choices() -> list[tuple[str, str]]:
    return [
        (key, provider.name)
        for key, provider in sorted(registry.all_providers().items())
        if provider.is_enabled()[0]
    ]


def _csv(value: str) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _scope_field_for(field: forms.ModelChoiceField, user, noun: str) -> None:
    """The scopes the user may assign; required of a user limited to scopes (no scope would
    make the object the whole account's, which they may not change)."""
    field.queryset = scopes_assignable(user)
    if user_scope_limited(user):
        field.required = True
        field.empty_label = "Choose one of your scopes"
        field.error_messages["required"] = ACCOUNT_LEVEL_CREATE.format(noun=noun)


def auth_kind_choices_by_provider() -> dict[str, list[tuple[str, str]]]:
    """``{provider key: [(auth kind, label), ...]}`` of the enabled providers: each offers its
    own kinds (one declaring none offers every registered kind)."""
    every = registry.auth_kind_choices()
    return {
        key: [(spec.key, spec.label) for spec in registry.get(key).auth_kinds] or every
        for key, _ in provider_choices()
    }


def _spec_requires(spec, field_name: str | None) -> bool:
    return bool(field_name) and any(field_name in alternatives for alternatives in spec.required)


class ConnectorForm(forms.Form):
    """A connector created inline in the wizard; the secret is write-only.

    The provider comes first: the auth kinds offered are its own (the page updates the list
    when the provider changes; a kind it does not have is refused under the field), and the
    account and secret fields are marked required when the chosen kind needs them."""

    # Service errors about these keys belong under these fields.
    service_fields = {"secrets": "secret", "config": "identity"}

    name = forms.CharField(max_length=100, label="Connector name")
    provider = forms.ChoiceField(label="Provider")
    auth_kind = forms.ChoiceField(label="Authentication")
    identity = forms.CharField(
        required=False,
        max_length=255,
        label="Account (email, username or client id)",
        help_text="Only for API tokens, app passwords and OAuth consumers.",
    )
    secret = forms.CharField(
        required=False,
        label="Token or secret",
        widget=forms.PasswordInput(render_value=False),
        help_text="Encrypted at rest and never shown again.",
    )
    base_url = forms.CharField(
        required=False,
        max_length=500,
        label="API base URL",
        help_text="Bitbucket Cloud: leave empty for bitbucket.org. Data Center: the instance's "
        "https:// URL (required).",
    )
    scope = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="No scope (the whole account's)"
    )
    ca_pem = forms.CharField(
        required=False,
        label="Private CA certificate (PEM)",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="Data Center instances whose certificate a private CA signed.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        _scope_field_for(self.fields["scope"], user, "A connector")
        providers = provider_choices()
        self.fields["provider"].choices = providers
        self.kinds_by_provider = auth_kind_choices_by_provider()
        provider = self._value("provider") or (providers[0][0] if providers else "")
        self.fields["provider"].initial = provider
        kinds = self.kinds_by_provider.get(provider, [])
        self.fields["auth_kind"].choices = kinds
        self.fields["auth_kind"].initial = kinds[0][0] if kinds else None
        name = dict(providers).get(provider, provider)
        allowed = ", ".join(label for _, label in kinds)
        self.fields["auth_kind"].error_messages["invalid_choice"] = (
            f"{name} has no auth kind %(value)s: choose one of {allowed}."
        )
        spec = registry.auth_kinds().get(self._value("auth_kind") or (kinds[0][0] if kinds else ""))
        if spec is not None:
            self.fields["secret"].required = _spec_requires(spec, spec.form_secret_field)
            self.fields["identity"].required = _spec_requires(spec, spec.identity_field)
            if spec.identity_label:
                self.fields["identity"].label = spec.identity_label
            if spec.help_text:
                self.fields["auth_kind"].help_text = spec.help_text

    def _value(self, name: str) -> str:
        if self.is_bound:
            return self.data.get(self.add_prefix(name), "") or ""
        return ""

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        _, config_key, secret_key = auth_fields(data["auth_kind"])
        config = {config_key: data["identity"]} if config_key and data["identity"] else {}
        secrets = {secret_key: data["secret"]} if secret_key and data["secret"] else {}
        return {
            "name": data["name"],
            "provider": data["provider"],
            "auth_kind": data["auth_kind"],
            "base_url": data["base_url"].strip(),
            "config": config,
            "secrets": secrets,
            "ca_pem": data["ca_pem"].strip(),
            "scope": data["scope"],
        }


class SetupForm(forms.Form):
    """Step 1 (and the top of Configuration): name, connector and what to discover."""

    name = forms.CharField(max_length=100, label="Integration name")
    connector = forms.ModelChoiceField(
        queryset=Connector.objects.none(),
        label="Connector",
        empty_label="Choose a connector",
        error_messages={"required": "Choose a connector, or create one below."},
    )

    def __init__(self, *args, user, instance: Integration | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.fields["connector"].queryset = connectors_visible(user)
        self.fields["connector"].label_from_instance = lambda c: (
            f"{c.name} ({registry.display_name(c.provider)})"
        )
        # What to discover: the target fields the registered providers declare.
        self.target_fields = registry.target_fields()
        for name, target_field in self.target_fields.items():
            self.fields[name] = forms.CharField(
                required=False,
                max_length=target_field.max_length,
                label=target_field.label,
                help_text=target_field.help_text,
            )
            # Required by the providers that declare it so (their validate_target refuses it
            # missing, under this field); the others ignore it, so the form cannot insist.
            self.fields[name].required_for = ", ".join(
                provider.name
                for _, provider in sorted(registry.all_providers().items())
                if any(f.name == name and f.required for f in provider.target_fields)
            )

    def target_bound_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.target_fields]

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        others = Integration.objects.filter(name=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise ValidationError(f"An integration named {name!r} already exists.")
        return name

    def target(self) -> dict:
        data = self.cleaned_data
        target: dict = {}
        for name, target_field in self.target_fields.items():
            value = _csv(data.get(name, "")) if target_field.many else data.get(name, "").strip()
            if value:
                target[name] = value
        return target

    def clean(self):
        cleaned = super().clean()
        connector = cleaned.get("connector")
        if connector is None:
            return cleaned
        try:
            provider_class = services.provider_class_get(connector.provider, "connector")
        except ValidationError as exc:
            self.add_error("connector", exc.message_dict["connector"])
            return cleaned
        target = {k: v for k, v in self.target().items() if k in provider_class.target_keys}
        for key, message in provider_class.validate_target(target).items():
            self.add_error(key if key in self.fields else None, message)
        return cleaned

    @staticmethod
    def initial_for(integration: Integration) -> dict:
        target = integration.target or {}
        initial = {"name": integration.name, "connector": integration.connector_id}
        for name, target_field in registry.target_fields().items():
            value = target.get(name, [] if target_field.many else "")
            initial[name] = ", ".join(value) if target_field.many else value
        return initial


@dataclass(frozen=True)
class RowError:
    """A row editor's error: the message, the input it is about (``ingested``, ``catalog``,
    ``path`` or ``expression``) and, for a JMESPath error, the expression split around the
    character the parser stopped at so the template can mark it."""

    message: str
    column: str
    before: str = ""
    at: str = ""
    after: str = ""
    marked: bool = False


def _row_error(*cells: tuple[str, str]) -> RowError | None:
    """The first invalid JMESPath cell of a row."""
    for column, value in cells:
        if not value:
            return RowError("An expression is required.", column)
        try:
            compile_expression(value)
        except ExpressionError as exc:
            return _expression_row_error(exc, column, value)
    return None


def _mapping_row_error(path: str, expression: str) -> RowError | None:
    if not path:
        return RowError("A catalog path is required.", "path")
    try:
        catalog_path_parts(path)
    except ExpressionError as exc:
        return RowError(exc.plain, "path")
    return _row_error(("expression", expression))


def _expression_row_error(exc: ExpressionError, column: str, value: str) -> RowError:
    if exc.position is None:
        return RowError(exc.plain, column)
    at = value[exc.position : exc.position + 1]
    return RowError(
        exc.plain,
        column,
        before=value[: exc.position],
        at=at,
        after=value[exc.position + 1 :],
        marked=True,
    )


OTHER = "__other__"
# Backstage's usual component types, offered beside those the catalog already holds.
BACKSTAGE_TYPES = ("documentation", "library", "service", "tool", "website")


class MappingForm(forms.Form):
    """Step 2: registration behaviour, kind and type, correlation rules, field mappings and
    secondary kinds. Rules and mappings are row lists (``rule_*`` and ``mapping_*``)."""

    registration = forms.ChoiceField(
        choices=choices.Registration.choices,
        initial=choices.Registration.REGISTER_AND_MERGE,
        widget=forms.RadioSelect,
        label="Registration behaviour",
    )
    entity_kind = forms.CharField(
        max_length=63, initial="Component", label="Kind", widget=forms.Select
    )
    entity_kind_other = forms.CharField(
        max_length=63, required=False, label="Other kind", help_text="Used when Kind is Other…"
    )
    entity_type = forms.CharField(
        max_length=63,
        required=False,
        initial="service",
        label="Type",
        help_text="Not configurable when the integration only merges.",
        widget=forms.Select,
    )
    entity_type_other = forms.CharField(
        max_length=63, required=False, label="Other type", help_text="Used when Type is Other…"
    )
    secondary_kinds = forms.MultipleChoiceField(
        choices=choices.SecondaryKind.choices,
        required=False,
        initial=list(services.DEFAULT_SECONDARY_KINDS),
        widget=forms.CheckboxSelectMultiple,
        label="Secondary kinds",
    )

    def __init__(self, *args, user, locked_secondary: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.locked_secondary = locked_secondary
        if locked_secondary:
            self.fields["secondary_kinds"].disabled = True
        self._offer("entity_kind", [*KNOWN_KINDS, "Template"])
        self._offer(
            "entity_type",
            sorted({*BACKSTAGE_TYPES, *entity_spec_types(queryset=entities_visible(user=user))}),
            blank="None",
        )
        self.rules: list[dict] = []
        self.mappings: list[tuple[str, str]] = []
        self.row_errors: dict[tuple[str, int], RowError] = {}

    def _offer(self, name: str, known: list[str], blank: str = "") -> None:
        """Offer the known values in the select, Other… for the rest; a saved value that is
        not known starts as Other… with the value typed in."""
        field = self.fields[name]
        field.widget.choices = (
            ([("", blank)] if blank else []) + [(v, v) for v in known] + [(OTHER, "Other…")]
        )
        field.widget.attrs.pop("maxlength", None)  # a CharField's, invalid on a select
        field.widget.attrs["data-other"] = f"id_{name}_other"
        value = self.initial.get(name, field.initial)
        if not self.is_bound and value and value not in known:
            self.initial[name] = OTHER
            self.initial[f"{name}_other"] = value

    def _chosen(self, name: str) -> str:
        value = self.cleaned_data[name].strip()
        if value != OTHER:
            return value
        typed = (self.data.get(self.add_prefix(f"{name}_other")) or "").strip()
        if not typed:
            label = self.fields[name].label.lower()
            raise ValidationError(f"Type the {label} under Other {label}, or choose one.")
        return typed

    def clean_entity_kind(self):
        kind = self._chosen("entity_kind")
        if not KIND_RE.match(kind):
            raise ValidationError(f"{kind!r} is not a valid kind (letters and digits).")
        return kind

    def clean_entity_type(self):
        return self._chosen("entity_type")

    def _rows(self, *names: str) -> list[list[str]]:
        """Posted rows of a row editor; rows whose text inputs are all empty are dropped (a
        select such as the operator always has a value)."""
        columns = [self.data.getlist(name) for name in names]
        length = max((len(column) for column in columns), default=0)
        rows = []
        for index in range(length):
            row = [column[index].strip() if index < len(column) else "" for column in columns]
            texts = [
                value for name, value in zip(names, row, strict=True) if name != "rule_operator"
            ]
            if any(texts):
                rows.append(row)
        return rows

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("registration") == choices.Registration.MERGE:
            cleaned["entity_type"] = ""
        rules = self._rows("rule_ingested", "rule_operator", "rule_catalog")
        self.rules = [
            {"ingested": ingested, "operator": operator or "equals", "catalog": catalog}
            for ingested, operator, catalog in rules
        ]
        self.mappings = [
            (path, expr) for path, expr in self._rows("mapping_path", "mapping_expression")
        ]
        self.row_errors = {}
        for index, rule in enumerate(self.rules):
            error = _row_error(("ingested", rule["ingested"]), ("catalog", rule["catalog"]))
            if error:
                self.row_errors[("rule", index)] = error
        for index, (path, expression) in enumerate(self.mappings):
            error = _mapping_row_error(path, expression)
            if error:
                self.row_errors[("mapping", index)] = error
        if self.row_errors:
            count = len(self.row_errors)
            self.add_error(
                None,
                f"{count} row{'s' if count > 1 else ''} below need{'' if count > 1 else 's'} "
                "attention: see the message under each.",
            )
        elif not self.rules:
            self.add_error(None, "Add at least one correlation rule.")
        else:
            self._service_validate()
        return cleaned

    def _service_validate(self) -> None:
        """What the rows' own checks leave to the services (such as an unknown operator)."""
        try:
            services.correlation_rules_validate(self.rules)
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                self.add_error(None, f"Correlation rule {_row_label(key)}: {messages[0]}")
        try:
            services.field_mappings_validate(dict(self.mappings))
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                self.add_error(
                    None, f"Field mapping {key.removeprefix('field_mappings.')}: {messages[0]}"
                )

    def rule_editor_rows(self) -> list[dict]:
        """Rows for the rules editor, each with its error (``None`` when it has none)."""
        return [
            {**rule, "index": index, "error": self.row_errors.get(("rule", index))}
            for index, rule in enumerate(self.rule_rows())
        ]

    def mapping_editor_rows(self) -> list[dict]:
        return [
            {
                "path": path,
                "expression": expression,
                "index": index,
                "error": self.row_errors.get(("mapping", index)),
            }
            for index, (path, expression) in enumerate(self.mapping_rows())
        ]

    def rule_rows(self) -> list[dict]:
        """Rows to render: what was posted, else the initial rules."""
        if self.is_bound:
            rows = self._rows("rule_ingested", "rule_operator", "rule_catalog")
            return [{"ingested": i, "operator": o, "catalog": c} for i, o, c in rows]
        return self.initial.get("rules", services.DEFAULT_CORRELATION)

    def mapping_rows(self) -> list[tuple[str, str]]:
        if self.is_bound:
            return [(p, e) for p, e in self._rows("mapping_path", "mapping_expression")]
        return list(self.initial.get("mappings", {}).items())

    @staticmethod
    def initial_for(integration: Integration) -> dict:
        return {
            "registration": integration.registration,
            "entity_kind": integration.entity_kind,
            "entity_type": integration.entity_type,
            "secondary_kinds": integration.secondary_kinds,
            "rules": [
                {"ingested": r.ingested_path, "operator": r.operator, "catalog": r.catalog_path}
                for r in integration.correlation_rules.all()
            ],
            "mappings": {m.catalog_path: m.expression for m in integration.field_mappings.all()},
        }


def _row_label(key: str) -> str:
    # "correlation[1].catalog" → "2 (catalog)"
    if key.startswith("correlation[") and "]" in key:
        index, _, rest = key.removeprefix("correlation[").partition("]")
        if index.isdigit():
            return f"{int(index) + 1}" + (f" ({rest.lstrip('.')})" if rest else "")
    return key


class AdvancedForm(forms.Form):
    """Step 3: schedule, history, scope and description."""

    update_frequency = forms.TypedChoiceField(
        choices=choices.UPDATE_FREQUENCY_CHOICES,
        coerce=int,
        initial=choices.DEFAULT_UPDATE_FREQUENCY,
        label="Update frequency",
    )
    start_date = forms.DateField(
        required=False,
        label="Start date",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Pull requests and commits older than this are not ingested.",
    )
    auto_import = forms.BooleanField(required=False, label="Auto-import future discovered entities")
    scope = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="No scope (visible to everyone)"
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    labels = forms.CharField(required=False, help_text="Comma-separated.")
    writeback_mode = forms.ChoiceField(
        choices=choices.WritebackMode.choices,
        initial=choices.WritebackMode.PULL_REQUEST,
        required=False,  # left out: the integration keeps its mode (a pull request when new)
        label="Write-back",
        help_text="How catalog-info.yaml is written to repositories: proposed as a pull request, "
        "or committed straight to the default branch.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        _scope_field_for(self.fields["scope"], user, "An integration")

    @staticmethod
    def initial_for(integration: Integration) -> dict:
        return {
            "update_frequency": integration.update_frequency,
            "start_date": integration.start_date,
            "auto_import": integration.auto_import,
            "scope": integration.scope_id,
            "description": integration.description,
            "labels": ", ".join(integration.labels or []),
            "writeback_mode": integration.writeback_mode,
        }


def integration_values(
    setup: SetupForm, mapping: MappingForm, advanced: AdvancedForm, *, include_secondary: bool
) -> dict:
    """Keyword arguments of ``integration_create`` / ``integration_update`` from valid forms."""
    s, m, a = setup.cleaned_data, mapping.cleaned_data, advanced.cleaned_data
    values = {
        "name": s["name"],
        "connector": s["connector"],
        "target": setup.target(),
        "registration": m["registration"],
        "entity_kind": m["entity_kind"],
        "entity_type": m["entity_type"],
        "correlation": mapping.rules,
        "field_mappings": dict(mapping.mappings),
        "update_frequency": a["update_frequency"],
        "start_date": a["start_date"],
        "auto_import": a["auto_import"],
        "scope": a["scope"],
        "description": a["description"],
        "labels": _csv(a["labels"]),
    }
    if a.get("writeback_mode"):
        values["writeback_mode"] = a["writeback_mode"]
    if include_secondary:
        values["secondary_kinds"] = list(m["secondary_kinds"])
    return values


_FIELD_ALIASES = {"target.workspace": "workspace", "target.projects": "projects"}


def apply_service_errors(exc: ValidationError, *forms_: forms.Form) -> list[str]:
    """Put a service's field errors on the forms that have those fields (a form's
    ``service_fields`` names where a service key goes); return the rest."""
    leftovers = []
    details = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
    for key, messages in details.items():
        field = _FIELD_ALIASES.get(key, key.removeprefix("target."))
        target_form = next((f for f in forms_ if field in f.fields), None)
        if target_form is None:
            target_form = next((f for f in forms_ if key in getattr(f, "service_fields", {})), None)
            if target_form is not None:
                field = target_form.service_fields[key]
        for message in messages:
            if target_form is not None:
                target_form.add_error(field, message)
            else:
                label = key.replace("_", " ") if key and key != "__all__" else ""
                leftovers.append(f"{label}: {message}" if label else message)
    return leftovers
