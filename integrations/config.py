"""Declarative configuration of connectors and integrations (``manage.py apply_config``).

A YAML file states the connectors and integrations that should exist. :func:`config_load` reads
and validates the whole file first — every error names the file, the line and the reason — and
returns a :class:`Plan`; :func:`config_apply` then writes it through the services in one
transaction, so an invalid file (or a service refusing a change) leaves the database untouched.

Why secrets must be ``${ENV_VAR}`` references: configuration files are committed, reviewed, copied
into CI logs and backups; a token written in one leaks with it. The file names the variable, the
environment where ``apply_config`` runs holds the value, and only the encrypted column stores it.

Applying is idempotent: an object whose declared settings already match is reported ``unchanged``
and not written (stored secrets are compared decrypted, not re-encrypted). Settings a file omits
take their defaults on creation and are left as they are on update, so a change made elsewhere
(an integration suspended from the admin) survives a re-apply until the file declares otherwise.
``auth`` is always declared as a whole; ``workspace``/``projects``/``repository_pattern`` form the
integration's target, replaced as a whole when any of them is declared. Objects a file does not
mention are kept: the file states what should exist, not the whole list.

Other apps add top-level keys (scorecards: ``checks``, ``scorecards``) with
:func:`config_section_register`: read by the same reader, so their errors name lines too, and
applied in the same transaction and summary. Any other key is refused.
"""

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction

from catalog.importing import BoundedLoader
from catalog.models import Scope
from catalog.validation import KIND_RE
from integrations import choices, services
from integrations.crypto import SecretDecryptionError
from integrations.models import Connector, Integration
from integrations.providers import registry

ENV_REFERENCE_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")

CONNECTOR_KEYS = {
    "name",
    "provider",
    "base_url",
    "auth",
    "ca_pem_file",
    "config",
    "proxy_url",
    "scope",
}
INTEGRATION_KEYS = {
    "name",
    "connector",
    "scope",
    "registration",
    "kind",
    "type",
    "correlation",
    "field_mappings",
    "secondary_kinds",
    "update_frequency",
    "start_date",
    "auto_import",
    "state",
    "description",
    "labels",
    "vanish_threshold",
    "writeback_mode",
}
# An integration's target keys (workspace, projects, ...) are the providers' target fields.
CORRELATION_KEYS = {"ingested", "catalog", "operator"}


def _public_auth_keys() -> set[str]:
    """Keys any auth kind keeps in ``Connector.config``: they belong under ``auth:``. (Each
    kind's public, secret and required keys are its provider's spec, ``registry.auth_kind``.)"""
    return {key for spec in registry.auth_kinds().values() for key in spec.public_fields}


# Secrets a provider obtains at run time (OAuth tokens): kept while the declared ones match.
RUNTIME_SECRET_KEYS = {"access_token", "refresh_token"}

WHY_ENVIRONMENT_REFERENCES = (
    "a secret written in the file is refused: configuration files are committed, reviewed and "
    "copied into logs and backups, so secrets stay in the environment. Write "
    '"${SOME_VARIABLE}" and set that variable where apply_config runs'
)


class ConfigError(ValueError):
    """An invalid configuration file: every problem with its file and line."""

    def __init__(self, path: str, errors: list[tuple[int, str]]):
        self.path = path
        self.errors = sorted(errors, key=lambda error: error[0])
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.path}:{line}: {message}" for line, message in self.errors]


@dataclass
class ConnectorSpec:
    name: str
    line: int
    lines: dict[str, int]  # service field name → line, to place the services' errors
    provider: str
    auth_kind: str
    auth_public: dict[str, Any]
    secrets: dict[str, Any] = field(repr=False)
    declared: dict[str, Any]  # base_url, ca_pem, config, scope — only when the file sets them


@dataclass
class IntegrationSpec:
    name: str
    line: int
    lines: dict[str, int]
    connector: str
    values: dict[str, Any]  # integration_create/_update settings the file declares


@dataclass
class Plan:
    path: str
    connectors: list[ConnectorSpec]
    integrations: list[IntegrationSpec]
    sections: dict[str, list] = field(default_factory=dict)  # registered key → its specs


@dataclass(frozen=True)
class Outcome:
    kind: str  # "connector" | "integration" | a registered section's noun ("check", ...)
    name: str
    action: str  # "created" | "updated" | "unchanged"
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        changed = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.kind} {self.name}: {self.action}{changed}"


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)
    dry_run: bool = False

    def count(self, action: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action == action)

    def of(self, kind: str, name: str) -> Outcome:
        return next(o for o in self.outcomes if o.kind == kind and o.name == name)

    @property
    def changed(self) -> bool:
        return any(outcome.action != "unchanged" for outcome in self.outcomes)

    def lines(self) -> list[str]:
        totals = (
            f"{self.count('created')} created, {self.count('updated')} updated, "
            f"{self.count('unchanged')} unchanged"
        )
        if self.dry_run:
            totals += " (dry run: nothing was written)"
        return [str(outcome) for outcome in self.outcomes] + [totals + "."]


@dataclass(frozen=True)
class ConfigSection:
    """A top-level key of the file that another app reads and applies.

    integrations never imports the apps built on it, so they register their keys from their
    ``AppConfig.ready()``. ``read(reader, node, plan)`` gets the key's value node and the plan
    read so far (sections read earlier, for references between them), reports problems through
    ``reader.error`` and returns its specs; nothing is applied when any section reported one.
    ``apply(specs)`` runs inside :func:`config_apply`'s transaction, after connectors,
    integrations and the sections registered before it, and returns its outcomes and the
    ``(line, message)`` errors of the changes its services refused.
    """

    key: str
    read: Callable[["ConfigReader", yaml.Node, Plan], list]
    apply: Callable[[list], tuple[list[Outcome], list[tuple[int, str]]]]


CORE_KEYS = ("connectors", "integrations")
_SECTIONS: dict[str, ConfigSection] = {}


def config_section_register(section: ConfigSection) -> None:
    """Let another app handle a top-level key; a key already handled is refused."""
    if section.key in CORE_KEYS or section.key in _SECTIONS:
        raise ValueError(f"apply_config already handles the key {section.key!r}")
    _SECTIONS[section.key] = section


def config_sections() -> list[ConfigSection]:
    """The registered sections, in the order they are read and applied."""
    return list(_SECTIONS.values())


# Reading: YAML nodes keep their marks, so every error can name its line.

INVALID = object()  # a value that could not be constructed (already reported)


def node_line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class ConfigReader:
    def __init__(self, loader: yaml.SafeLoader):
        self.loader = loader
        self.errors: list[tuple[int, str]] = []

    def error(self, node_or_line: yaml.Node | int, message: str) -> None:
        line = node_or_line if isinstance(node_or_line, int) else node_line(node_or_line)
        self.errors.append((line, message))

    def value(self, node: yaml.Node, where: str = "") -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:  # e.g. a date such as 2024-13-01
            problem = getattr(exc, "problem", None) or str(exc)
            self.error(node, f"{where}{': ' if where else ''}invalid value: {problem}")
            return INVALID

    def mapping(
        self, node: yaml.Node, where: str, allowed: set[str] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """Keys of a mapping node → (key node, value node); unknown and repeated keys refused."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{where} must be a mapping")
            return None
        self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.error(key_node, f"{where}: keys must be strings")
                continue
            if key in result:
                self.error(key_node, f"{where}: {key!r} is repeated")
                continue
            result[key] = (key_node, value_node)
        if allowed is not None:
            self.refuse_unknown(result, allowed, where)
        return result

    def refuse_unknown(self, keys: dict, allowed: set[str], where: str) -> None:
        for key in [key for key in keys if key not in allowed]:
            known = ", ".join(sorted(allowed))
            self.error(keys.pop(key)[0], f"{where}: unknown key {key!r} (allowed: {known})")

    def label(self, keys: dict, where: str, noun: str) -> str:
        """``connector <name>`` when the name is readable, else the position in the file."""
        name_node = keys.get("name", (None, None))[1]
        if isinstance(name_node, yaml.ScalarNode) and name_node.value.strip():
            return f"{noun} {name_node.value}"
        return where

    def sequence(self, node: yaml.Node, where: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, f"{where} must be a list")
            return None
        return list(node.value)

    def string(self, node: yaml.Node, where: str, *, required: bool = True) -> str | None:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or (required and not value.strip()):
            self.error(node, f"{where} must be a {'non-empty ' if required else ''}string")
            return None
        return value

    def strings(self, node: yaml.Node, where: str) -> list[str] | None:
        items = self.sequence(node, where)
        if items is None:
            return None
        values = [self.string(item, f"{where}[{i}]") for i, item in enumerate(items)]
        return None if None in values else values

    def env(self, node: yaml.Node, where: str, *, secret: bool) -> str | None:
        """A value from the environment (``${NAME}``); plain values only where not secret."""
        raw = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        match = ENV_REFERENCE_RE.match(raw) if isinstance(raw, str) else None
        if match is None:
            if secret:
                self.error(node, f"{where}: {WHY_ENVIRONMENT_REFERENCES}")
                return None
            return self.string(node, where)
        variable = match.group(1)
        value = os.environ.get(variable)
        if not value:
            self.error(node, f"{where}: the environment variable {variable} is not set (or empty)")
            return None
        return value


def _scope(reader: ConfigReader, node: yaml.Node, where: str) -> Scope | None:
    path = reader.string(node, where)
    if path is None:
        return None
    scope = Scope.objects.filter(path=path.strip("/")).first()
    if scope is None:
        reader.error(node, f"{where}: no scope with the path {path!r}")
    return scope


def _provider_class(reader: ConfigReader, node: yaml.Node, where: str):
    key = reader.string(node, where)
    if key is None:
        return None
    try:
        return services.provider_class_get(key)
    except ValidationError as exc:
        reader.error(node, f"{where}: {' '.join(exc.message_dict['provider'])}")
        return None


def _read_auth(
    reader: ConfigReader, spec: dict, node: yaml.Node, where: str, provider_class
) -> None:
    """Fill ``auth_kind``, ``auth_public`` and ``secrets`` of a connector spec."""
    keys = reader.mapping(node, where)
    if keys is None:
        return
    spec["lines"]["auth_kind"] = spec["lines"]["secrets"] = node_line(node)
    if "kind" not in keys:
        reader.error(node, f"{where}: 'kind' is required")
        return
    kind_node = keys.pop("kind")[1]
    kind = reader.string(kind_node, f"{where}.kind")
    if kind is None:
        return
    spec["lines"]["auth_kind"] = node_line(kind_node)
    if provider_class is not None:
        try:
            services.connector_auth_kind_validate(provider=provider_class.key, auth_kind=kind)
        except ValidationError as exc:
            reader.error(kind_node, f"{where}.kind: {' '.join(exc.message_dict['auth_kind'])}")
            return
    elif kind not in registry.auth_kinds():
        reader.error(kind_node, f"{where}.kind: unknown auth kind {kind!r}")
        return
    spec["auth_kind"] = kind
    auth = registry.auth_kind(kind)
    secret_keys = set(auth.secret_fields)
    public_keys = set(auth.public_fields)
    for key, (key_node, value_node) in keys.items():
        label = f"{where}.{key}"
        if key in public_keys:
            spec["auth_public"][key] = reader.env(value_node, label, secret=False)
        elif key == "tokens" and "tokens" in secret_keys:
            items = reader.sequence(value_node, label)
            if items is not None:
                if not items:
                    reader.error(value_node, f"{label} must list at least one token")
                spec["secrets"][key] = [
                    reader.env(item, f"{label}[{i}]", secret=True) for i, item in enumerate(items)
                ]
        elif key in secret_keys:
            spec["secrets"][key] = reader.env(value_node, label, secret=True)
        else:
            allowed = ", ".join(["kind", *sorted(public_keys | secret_keys)])
            reader.error(key_node, f"{where}: unknown key {key!r} for {kind} (allowed: {allowed})")
    if "token" in keys and "tokens" in keys:
        reader.error(node, f"{where}: give either token or tokens, not both")
    for alternatives in auth.required:
        if not any(key in keys for key in alternatives):
            reader.error(node, f"{where}: {' or '.join(alternatives)} is required for {kind}")


def _read_connector(
    reader: ConfigReader, node: yaml.Node, index: int, base_dir: Path
) -> dict | None:
    keys = reader.mapping(node, f"connectors[{index}]")
    if keys is None:
        return None
    where = reader.label(keys, f"connectors[{index}]", "connector")
    reader.refuse_unknown(keys, CONNECTOR_KEYS, where)
    spec: dict[str, Any] = {
        "line": node_line(node),
        "lines": {},
        "auth_public": {},
        "secrets": {},
        "declared": {},
    }
    for required in ("name", "provider", "auth"):
        if required not in keys:
            reader.error(node, f"{where}: {required!r} is required")
    if "name" in keys:
        name_node = keys["name"][1]
        spec["name"] = reader.string(name_node, f"{where}.name")
        spec["lines"]["name"] = node_line(name_node)
    provider_class = None
    if "provider" in keys:
        provider_node = keys["provider"][1]
        provider_class = _provider_class(reader, provider_node, f"{where}.provider")
        spec["provider"] = provider_class.key if provider_class else None
        spec["lines"]["provider"] = node_line(provider_node)
    if "auth" in keys:
        _read_auth(reader, spec, keys["auth"][1], f"{where}.auth", provider_class)
    if "base_url" in keys:
        url_node = keys["base_url"][1]
        url = reader.string(url_node, f"{where}.base_url")
        spec["lines"]["base_url"] = node_line(url_node)
        if url is not None:
            try:
                URLValidator(schemes=["http", "https"])(url)
            except ValidationError:
                reader.error(url_node, f"{where}.base_url: {url!r} is not an http(s) URL")
            spec["declared"]["base_url"] = url.rstrip("/")
    if "ca_pem_file" in keys:
        pem_node = keys["ca_pem_file"][1]
        spec["lines"]["ca_pem"] = node_line(pem_node)
        relative = reader.string(pem_node, f"{where}.ca_pem_file")
        if relative is not None:
            pem_path = base_dir / relative
            try:
                pem = pem_path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                reader.error(pem_node, f"{where}.ca_pem_file: cannot read {pem_path}: {exc}")
            else:
                if "-----BEGIN CERTIFICATE-----" not in pem:
                    reader.error(
                        pem_node, f"{where}.ca_pem_file: {pem_path} holds no PEM certificate"
                    )
                spec["declared"]["ca_pem"] = pem
    if "config" in keys:
        config_node = keys["config"][1]
        spec["lines"]["config"] = node_line(config_node)
        if reader.mapping(config_node, f"{where}.config") is not None:
            config = reader.value(config_node)
            clash = set(config) & _public_auth_keys()
            if clash:
                reader.error(
                    config_node,
                    f"{where}.config: {', '.join(sorted(clash))} belong under auth",
                )
            spec["declared"]["config"] = config
    if "proxy_url" in keys:
        proxy_node = keys["proxy_url"][1]
        spec["lines"]["proxy_url"] = node_line(proxy_node)
        raw = reader.value(proxy_node) if isinstance(proxy_node, yaml.ScalarNode) else None
        # A proxy URL may carry a password: then, like any secret, it comes from the environment.
        carries_password = isinstance(raw, str) and "@" in urlsplit(raw).netloc
        proxy_url = reader.env(proxy_node, f"{where}.proxy_url", secret=carries_password)
        if proxy_url is not None:
            spec["declared"]["proxy_url"] = proxy_url
    if "scope" in keys:
        scope_node = keys["scope"][1]
        spec["lines"]["scope"] = node_line(scope_node)
        spec["declared"]["scope"] = _scope(reader, scope_node, f"{where}.scope")
    return spec


def _read_target(
    reader: ConfigReader, spec: dict, keys: dict, where: str, provider_class
) -> dict | None:
    fields = registry.target_fields()
    declared = [key for key in fields if key in keys]
    if not declared:
        return None
    target: dict[str, Any] = {}
    for key in declared:
        value_node = keys[key][1]
        spec["lines"][f"target.{key}"] = node_line(value_node)
        if fields[key].many:
            items = reader.strings(value_node, f"{where}.{key}")
            if items is not None:
                target[key] = items
            continue
        value = reader.string(value_node, f"{where}.{key}")
        if value is None:
            continue
        if key == "repository_pattern":
            try:
                re.compile(value)
            except re.error as exc:
                reader.error(
                    value_node, f"{where}.repository_pattern: invalid regular expression: {exc}"
                )
                continue
        target[key] = value
    if provider_class is not None:
        for key, message in provider_class.validate_target(target).items():
            line = spec["lines"].get(f"target.{key}", spec["line"])
            reader.error(line, f"{where}.{key}: {message} ({provider_class.name})")
    return target


def _read_correlation(reader: ConfigReader, spec: dict, node: yaml.Node, where: str) -> list | None:
    items = reader.sequence(node, f"{where}.correlation")
    if items is None:
        return None
    rules = []
    for index, item in enumerate(items):
        label = f"correlation[{index}]"
        keys = reader.mapping(item, f"{where}.{label}", CORRELATION_KEYS)
        if keys is None:
            continue
        rule = {}
        spec["lines"][label] = node_line(item)
        for key in ("ingested", "catalog"):
            if key not in keys:
                reader.error(item, f"{where}.{label}: {key!r} is required")
                continue
            value_node = keys[key][1]
            spec["lines"][f"{label}.{key}"] = node_line(value_node)
            expression = reader.string(value_node, f"{where}.{label}.{key}")
            if expression is None:
                continue
            try:
                services.expression_validate(expression, f"{label}.{key}")
            except ValidationError as exc:
                reader.error(value_node, f"{where}.{label}.{key}: {exc.messages[0]}")
                continue
            rule[key] = expression
        operator = choices.Operator.EQUALS
        if "operator" in keys:
            operator_node = keys["operator"][1]
            spec["lines"][f"{label}.operator"] = node_line(operator_node)
            operator = reader.value(operator_node)
            if operator not in choices.Operator.values:
                reader.error(operator_node, f"{where}.{label}.operator: must be equals or contains")
        rule["operator"] = operator
        rules.append(rule)
    return rules


def _read_field_mappings(
    reader: ConfigReader, spec: dict, node: yaml.Node, where: str
) -> dict | None:
    keys = reader.mapping(node, f"{where}.field_mappings")
    if keys is None:
        return None
    spec["lines"]["field_mappings"] = node_line(node)
    mappings = {}
    for path, (key_node, value_node) in keys.items():
        label = f"field_mappings.{path}"
        spec["lines"][label] = node_line(key_node)
        try:
            services.catalog_path_validate(path, label)
        except ValidationError as exc:
            reader.error(key_node, f"{where}.{label}: {exc.messages[0]}")
            continue
        expression = reader.string(value_node, f"{where}.{label}")
        if expression is None:
            continue
        try:
            services.expression_validate(expression, label)
        except ValidationError as exc:
            reader.error(value_node, f"{where}.{label}: {exc.messages[0]}")
            continue
        mappings[path] = expression
    return mappings


def _read_integration(
    reader: ConfigReader, node: yaml.Node, index: int, connector_providers: dict[str, Any]
) -> dict | None:
    keys = reader.mapping(node, f"integrations[{index}]")
    if keys is None:
        return None
    where = reader.label(keys, f"integrations[{index}]", "integration")
    reader.refuse_unknown(keys, INTEGRATION_KEYS | set(registry.target_fields()), where)
    spec: dict[str, Any] = {"line": node_line(node), "lines": {}, "values": {}}
    values = spec["values"]
    lines = spec["lines"]
    for required in ("name", "connector"):
        if required not in keys:
            reader.error(node, f"{where}: {required!r} is required")
    if "name" in keys:
        name_node = keys["name"][1]
        spec["name"] = reader.string(name_node, f"{where}.name")
        lines["name"] = node_line(name_node)
    provider_class = None
    if "connector" in keys:
        connector_node = keys["connector"][1]
        lines["connector"] = node_line(connector_node)
        spec["connector"] = reader.string(connector_node, f"{where}.connector")
        if spec["connector"] is not None:
            if spec["connector"] in connector_providers:
                provider_class = connector_providers[spec["connector"]]
            else:
                existing = Connector.objects.filter(name=spec["connector"]).first()
                if existing is None:
                    reader.error(
                        connector_node,
                        f"{where}.connector: no connector named {spec['connector']!r} in this "
                        "file or the database",
                    )
                else:
                    try:
                        provider_class = registry.get(existing.provider)
                    except registry.UnknownProvider as exc:
                        reader.error(connector_node, f"{where}.connector: {exc}")

    target = _read_target(reader, spec, keys, where, provider_class)
    if target is not None:
        values["target"] = target

    def node_of(key: str, field_name: str | None = None) -> yaml.Node | None:
        if key not in keys:
            return None
        value_node = keys[key][1]
        lines[field_name or key] = node_line(value_node)
        return value_node

    if (value_node := node_of("scope")) is not None:
        values["scope"] = _scope(reader, value_node, f"{where}.scope")
    if (value_node := node_of("registration")) is not None:
        registration = reader.value(value_node)
        if registration not in choices.Registration.values:
            reader.error(
                value_node,
                f"{where}.registration: must be one of {', '.join(choices.Registration.values)}",
            )
        values["registration"] = registration
    if (value_node := node_of("kind", "entity_kind")) is not None:
        kind = reader.value(value_node)
        if not isinstance(kind, str) or not KIND_RE.match(kind):
            reader.error(value_node, f"{where}.kind: {kind!r} is not a valid entity kind")
        values["entity_kind"] = kind
    if (value_node := node_of("type", "entity_type")) is not None:
        entity_type = reader.string(value_node, f"{where}.type")
        if values.get("registration") == choices.Registration.MERGE:
            reader.error(
                value_node,
                f"{where}.type: the type is not configurable when the integration only merges",
            )
        values["entity_type"] = entity_type
    if (value_node := node_of("correlation")) is not None:
        values["correlation"] = _read_correlation(reader, spec, value_node, where)
    if (value_node := node_of("field_mappings")) is not None:
        values["field_mappings"] = _read_field_mappings(reader, spec, value_node, where)
    if (value_node := node_of("secondary_kinds")) is not None:
        kinds = reader.strings(value_node, f"{where}.secondary_kinds")
        if kinds is not None and not set(kinds) <= set(choices.SecondaryKind.values):
            allowed = ", ".join(choices.SecondaryKind.values)
            reader.error(value_node, f"{where}.secondary_kinds: must list only {allowed}")
        values["secondary_kinds"] = kinds
    if (value_node := node_of("update_frequency")) is not None:
        frequency = reader.value(value_node)
        minutes = choices.UPDATE_FREQUENCIES.get(frequency) if isinstance(frequency, str) else None
        if minutes is None and isinstance(frequency, int) and not isinstance(frequency, bool):
            minutes = frequency if frequency in choices.UPDATE_FREQUENCIES.values() else None
        if minutes is None:
            allowed = ", ".join(choices.UPDATE_FREQUENCIES)
            reader.error(value_node, f"{where}.update_frequency: must be one of {allowed}")
        values["update_frequency"] = minutes
    if (value_node := node_of("start_date")) is not None:
        start = reader.value(value_node, f"{where}.start_date")
        if isinstance(start, str):
            try:
                start = date.fromisoformat(start)
            except ValueError:
                start = None
        if start is not INVALID and (not isinstance(start, date) or hasattr(start, "hour")):
            reader.error(value_node, f"{where}.start_date: must be a date (YYYY-MM-DD)")
        values["start_date"] = start
    if (value_node := node_of("auto_import")) is not None:
        auto_import = reader.value(value_node)
        if not isinstance(auto_import, bool):
            reader.error(value_node, f"{where}.auto_import: must be true or false")
        values["auto_import"] = auto_import
    if (value_node := node_of("state")) is not None:
        state = reader.value(value_node)
        if state not in choices.IntegrationState.values:
            reader.error(value_node, f"{where}.state: must be enabled or suspended")
        values["state"] = state
    if (value_node := node_of("description")) is not None:
        values["description"] = reader.string(value_node, f"{where}.description", required=False)
    if (value_node := node_of("labels")) is not None:
        values["labels"] = reader.strings(value_node, f"{where}.labels")
    if (value_node := node_of("vanish_threshold")) is not None:
        threshold = reader.value(value_node)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not 0 < threshold <= 1
        ):
            reader.error(value_node, f"{where}.vanish_threshold: must be a number in (0, 1]")
        values["vanish_threshold"] = threshold
    if (value_node := node_of("writeback_mode")) is not None:
        mode = reader.value(value_node)
        if mode not in choices.WritebackMode.values:
            allowed = " or ".join(choices.WritebackMode.values)
            reader.error(value_node, f"{where}.writeback_mode: must be {allowed}")
        values["writeback_mode"] = mode
    return spec


def config_load(path: str | Path) -> Plan:
    """Read and validate a configuration file; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(label, [(0, f"cannot be read ({exc})")]) from exc
    loader = BoundedLoader(text)  # an operator's file, but bounded like any other
    reader = ConfigReader(loader)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            line = mark.line + 1 if mark else 0
            raise ConfigError(label, [(line, f"invalid YAML: {problem}")]) from exc
        if root is None:
            raise ConfigError(label, [(1, "the file is empty")])
        try:
            plan = _read_plan(reader, root, label, path.resolve().parent)
        except yaml.YAMLError as exc:  # a value that cannot be constructed (e.g. a bad date)
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            reader.error(mark.line + 1 if mark else 0, f"invalid value: {problem}")
            plan = None
    finally:
        loader.dispose()
    if reader.errors or plan is None:
        raise ConfigError(label, reader.errors)
    return plan


def _read_plan(reader: ConfigReader, root: yaml.Node, label: str, base_dir: Path) -> Plan:
    allowed = {*CORE_KEYS, *(section.key for section in config_sections())}
    top = reader.mapping(root, "the file", allowed) or {}
    for key, (_, value_node) in list(top.items()):
        if value_node.tag == "tag:yaml.org,2002:null":  # "connectors:" with nothing under it
            del top[key]
    connector_specs: list[ConnectorSpec] = []
    connector_providers: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    if "connectors" in top:
        for index, item in enumerate(reader.sequence(top["connectors"][1], "connectors") or []):
            spec = _read_connector(reader, item, index, base_dir)
            if spec is None or not spec.get("name"):
                continue
            if spec["name"] in first_line:
                reader.error(
                    item,
                    f"connector {spec['name']} is declared twice (first on line "
                    f"{first_line[spec['name']]})",
                )
                continue
            first_line[spec["name"]] = spec["line"]
            provider_key = spec.get("provider")
            connector_providers[spec["name"]] = registry.get(provider_key) if provider_key else None
            if provider_key and spec.get("auth_kind"):
                connector_specs.append(ConnectorSpec(**spec))
    integration_specs: list[IntegrationSpec] = []
    first_line = {}
    if "integrations" in top:
        for index, item in enumerate(reader.sequence(top["integrations"][1], "integrations") or []):
            spec = _read_integration(reader, item, index, connector_providers)
            if spec is None or not spec.get("name") or not spec.get("connector"):
                continue
            if spec["name"] in first_line:
                reader.error(
                    item,
                    f"integration {spec['name']} is declared twice (first on line "
                    f"{first_line[spec['name']]})",
                )
                continue
            first_line[spec["name"]] = spec["line"]
            integration_specs.append(IntegrationSpec(**spec))
    plan = Plan(label, connector_specs, integration_specs)
    for section in config_sections():
        if section.key in top:
            plan.sections[section.key] = section.read(reader, top[section.key][1], plan)
    return plan


# Applying: diff against the database, write through the services, all or nothing.


def config_error_lines(exc: ValidationError, lines: dict[str, int], default: int, where: str):
    if hasattr(exc, "error_dict"):
        for field_name, messages in exc.message_dict.items():
            line = lines.get(field_name)
            if line is None and "." in field_name:  # field_mappings.<path> of the service
                line = lines.get(field_name.split(".", 1)[0])
            for message in messages:
                yield line or default, f"{where}: {field_name}: {message}"
    else:
        for message in exc.messages:
            yield default, f"{where}: {message}"


def _secrets_match(connector: Connector, declared: dict) -> bool:
    try:
        stored = connector.secrets
    except SecretDecryptionError:
        return False
    relevant = {k: v for k, v in stored.items() if k in declared or k not in RUNTIME_SECRET_KEYS}
    return relevant == declared


def _connector_apply(spec: ConnectorSpec) -> tuple[Connector, Outcome]:
    existing = Connector.objects.filter(name=spec.name).first()
    if existing is None:
        declared = spec.declared
        connector = services.connector_create(
            name=spec.name,
            provider=spec.provider,
            auth_kind=spec.auth_kind,
            secrets=spec.secrets,
            base_url=declared.get("base_url", ""),
            config={**declared.get("config", {}), **spec.auth_public},
            ca_pem=declared.get("ca_pem", ""),
            proxy_url=declared.get("proxy_url", ""),
            scope=declared.get("scope"),
        )
        return connector, Outcome("connector", spec.name, "created")
    if existing.provider != spec.provider:
        raise ValidationError(
            {
                "provider": f"the connector uses {existing.provider}; a provider cannot change, "
                "declare a new connector instead"
            }
        )
    desired: dict[str, Any] = {"auth_kind": spec.auth_kind}
    for key in ("base_url", "ca_pem", "proxy_url"):
        if key in spec.declared:
            desired[key] = spec.declared[key]
    base_config = spec.declared.get("config")
    if base_config is None:
        public = _public_auth_keys()
        base_config = {k: v for k, v in existing.config.items() if k not in public}
    desired["config"] = {**base_config, **spec.auth_public}
    changes = {key: value for key, value in desired.items() if getattr(existing, key) != value}
    if "scope" in spec.declared:
        scope = spec.declared["scope"]
        if existing.scope_id != (scope.pk if scope else None):
            changes["scope"] = scope
    secrets = None if _secrets_match(existing, spec.secrets) else spec.secrets
    if not changes and secrets is None:
        return existing, Outcome("connector", spec.name, "unchanged")
    services.connector_update(connector=existing, secrets=secrets, **changes)
    fields = tuple(sorted(changes)) + (("secrets",) if secrets is not None else ())
    return existing, Outcome("connector", spec.name, "updated", fields)


def _current_rules(integration: Integration) -> list[dict]:
    return [
        {"ingested": rule.ingested_path, "catalog": rule.catalog_path, "operator": rule.operator}
        for rule in integration.correlation_rules.order_by("position", "pk")
    ]


def _current_mappings(integration: Integration) -> list[tuple[str, str]]:
    return [
        (mapping.catalog_path, mapping.expression)
        for mapping in integration.field_mappings.order_by("position", "pk")
    ]


def _integration_changes(integration: Integration, values: dict) -> dict:
    changes = {}
    for key, value in values.items():
        if key == "scope":
            differs = integration.scope_id != (value.pk if value else None)
        elif key == "connector":
            differs = integration.connector_id != value.pk
        elif key == "correlation":
            differs = _current_rules(integration) != value
        elif key == "field_mappings":
            differs = _current_mappings(integration) != list(value.items())
        elif key == "secondary_kinds":
            differs = sorted(integration.secondary_kinds) != sorted(value)
        else:
            differs = getattr(integration, key) != value
        if differs:
            changes[key] = value
    return changes


def _integration_apply(spec: IntegrationSpec, connector: Connector) -> Outcome:
    values = dict(spec.values)
    existing = Integration.objects.filter(name=spec.name).first()
    if existing is None:
        services.integration_create(connector=connector, name=spec.name, **values)
        return Outcome("integration", spec.name, "created")
    values["connector"] = connector
    changes = _integration_changes(existing, values)
    if not changes:
        return Outcome("integration", spec.name, "unchanged")
    services.integration_update(integration=existing, **changes)
    return Outcome("integration", spec.name, "updated", tuple(sorted(changes)))


def config_apply(plan: Plan, *, dry_run: bool = False) -> Summary:
    """Write the plan in one transaction; raise :class:`ConfigError` (nothing written) if a
    service refuses any change. With ``dry_run`` everything is rolled back after diffing."""
    summary = Summary(dry_run=dry_run)
    errors: list[tuple[int, str]] = []
    with transaction.atomic():
        connectors: dict[str, Connector] = {}
        for spec in plan.connectors:
            try:
                connector, outcome = _connector_apply(spec)
            except ValidationError as exc:
                errors.extend(
                    config_error_lines(exc, spec.lines, spec.line, f"connector {spec.name}")
                )
                continue
            connectors[spec.name] = connector
            summary.outcomes.append(outcome)
        for spec in plan.integrations:
            connector = connectors.get(spec.connector)
            if connector is None:
                connector = Connector.objects.filter(name=spec.connector).first()
                if connector is None:  # its declaration failed: already reported
                    continue
            try:
                summary.outcomes.append(_integration_apply(spec, connector))
            except ValidationError as exc:
                errors.extend(
                    config_error_lines(exc, spec.lines, spec.line, f"integration {spec.name}")
                )
        for section in config_sections():
            if section.key in plan.sections:
                outcomes, refused = section.apply(plan.sections[section.key])
                summary.outcomes.extend(outcomes)
                errors.extend(refused)
        if errors:
            raise ConfigError(plan.path, errors)
        if dry_run:
            transaction.set_rollback(True)
    return summary
