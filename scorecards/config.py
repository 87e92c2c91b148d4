"""The ``checks:`` and ``scorecards:`` keys of ``apply_config`` files.

Read with the integrations' reader (every error names its line), validated up front by the same
model ``clean()`` the admin and the API use, and applied through :mod:`scorecards.services` in
``apply_config``'s one transaction. Checks are applied before scorecards, which name them. As
with connectors and integrations, keys a file omits take their defaults on creation and are left
as they are on update, and objects the file does not mention are kept: a file states what should
exist, it is not the whole list (delete through the admin or the API).
"""

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from django.core.exceptions import ValidationError

from integrations.config import (
    INVALID,
    ConfigReader,
    ConfigSection,
    Outcome,
    Plan,
    config_error_lines,
    node_line,
)
from scorecards import services
from scorecards.models import Check, Scorecard

CHECK_KEYS = {"name", "description", "how_to_fix", "rule"}
SCORECARD_KEYS = {"name", "description", "filter", "levels", "checks"}
ENTRY_KEYS = {"check", "weight"}

# ``rule.all[1].op: ...``: the part a rule or levels error names, to find its line.
_PART_RE = re.compile(r"^\w+((?:\.\w+|\[\d+\])*)")
_STEP_RE = re.compile(r"\.(\w+)|\[(\d+)\]")


@dataclass
class ObjectSpec:
    name: str
    line: int
    lines: dict[str, int]  # service field name → line, to place the services' errors
    values: dict[str, Any]  # the settings the file declares


def _part_line(node: yaml.Node, message: str) -> int:
    """The line of the deepest node of the part a validation message starts with."""
    match = _PART_RE.match(message)
    for key, index in _STEP_RE.findall(match.group(1) if match else ""):
        if key and isinstance(node, yaml.MappingNode):
            found = [value for name, value in node.value if getattr(name, "value", None) == key]
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            found = [node.value[int(index)]]
        else:
            found = []
        if not found:
            break
        node = found[0]
    return node_line(node)


def _json_value(reader: ConfigReader, node: yaml.Node, where: str) -> Any:
    """A YAML value stored as JSON: a date or ``.nan`` is refused here, not by the database."""
    value = reader.value(node, where)
    if value is INVALID:
        return INVALID
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        reader.error(node, f"{where}: only JSON values are allowed (quote dates and times)")
        return INVALID
    return value


def _model_clean(reader: ConfigReader, instance, nodes: dict[str, yaml.Node], where: str) -> None:
    """The model's own ``clean()`` over the declared fields, each error on its part's line."""
    try:
        instance.clean()
    except ValidationError as exc:
        for field_name, messages in exc.message_dict.items():
            if field_name not in nodes:  # a default the file does not set cannot be at fault
                continue
            for message in messages:
                reader.error(_part_line(nodes[field_name], message), f"{where}: {message}")


def _read_object(
    reader: ConfigReader, item: yaml.Node, where: str, noun: str, allowed: set[str]
) -> tuple[dict, dict[str, yaml.Node], str] | None:
    """An item's keys (unknown ones refused), its value nodes and its label; ``name``
    required."""
    keys = reader.mapping(item, where)
    if keys is None:
        return None
    label = reader.label(keys, where, noun)
    reader.refuse_unknown(keys, allowed, label)
    nodes = {key: value_node for key, (_, value_node) in keys.items()}
    if "name" not in nodes:
        reader.error(item, f"{label}: 'name' is required")
        return None
    name = reader.string(nodes["name"], f"{label}.name")
    if name is None:
        return None
    lines = {key: node_line(value_node) for key, value_node in nodes.items()}
    return {"name": name, "line": node_line(item), "lines": lines, "values": {}}, nodes, label


def _read_items(reader: ConfigReader, node: yaml.Node, key: str, noun: str, read_one) -> list:
    specs: list[ObjectSpec] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(reader.sequence(node, key) or []):
        spec = read_one(reader, item, f"{key}[{index}]")
        if spec is None:
            continue
        if spec.name in first_line:
            reader.error(
                item,
                f"{noun} {spec.name} is declared twice (first on line {first_line[spec.name]})",
            )
            continue
        first_line[spec.name] = spec.line
        specs.append(spec)
    return specs


def _read_texts(reader: ConfigReader, spec: dict, nodes: dict, label: str, keys) -> None:
    for key in keys:
        if key in nodes:
            spec["values"][key] = reader.string(nodes[key], f"{label}.{key}", required=False)


def _read_check(reader: ConfigReader, item: yaml.Node, where: str) -> ObjectSpec | None:
    read = _read_object(reader, item, where, "check", CHECK_KEYS)
    if read is None:
        return None
    spec, nodes, label = read
    _read_texts(reader, spec, nodes, label, ("description", "how_to_fix"))
    if "rule" not in nodes:
        reader.error(item, f"{label}: 'rule' is required")
    else:
        rule = _json_value(reader, nodes["rule"], f"{label}.rule")
        if rule is not INVALID:
            _model_clean(reader, Check(rule=rule), {"rule": nodes["rule"]}, label)
            spec["values"]["rule"] = rule
    return ObjectSpec(**spec)


def _read_entries(
    reader: ConfigReader, node: yaml.Node, label: str, declared: set[str]
) -> list[tuple[str, int]] | None:
    """``checks: [{check: <name>, weight: 2}, ...]``: names from the file or the database."""
    items = reader.sequence(node, f"{label}.checks")
    if items is None:
        return None
    entries: list[tuple[str, int]] = []
    for index, item in enumerate(items):
        where = f"{label}.checks[{index}]"
        keys = reader.mapping(item, where, ENTRY_KEYS)
        if keys is None:
            continue
        if "check" not in keys:
            reader.error(item, f"{where}: 'check' is required")
            continue
        check_node = keys["check"][1]
        name = reader.string(check_node, f"{where}.check")
        if name is None:
            continue
        if name not in declared and not Check.objects.filter(name=name).exists():
            reader.error(
                check_node, f"{where}.check: no check named {name!r} in this file or the database"
            )
            continue
        if any(name == seen for seen, _ in entries):
            reader.error(check_node, f"{where}.check: {name!r} is listed twice")
            continue
        weight = 1
        if "weight" in keys:
            weight_node = keys["weight"][1]
            weight = reader.value(weight_node)
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                reader.error(
                    weight_node, f"{where}.weight: must be a whole number ≥ 1, got {weight!r}"
                )
                continue
        entries.append((name, weight))
    return entries


def _read_scorecard(
    reader: ConfigReader, item: yaml.Node, where: str, declared_checks: set[str]
) -> ObjectSpec | None:
    read = _read_object(reader, item, where, "scorecard", SCORECARD_KEYS)
    if read is None:
        return None
    spec, nodes, label = read
    values = spec["values"]
    _read_texts(reader, spec, nodes, label, ("description", "filter"))
    if "levels" in nodes:
        values["levels"] = _json_value(reader, nodes["levels"], f"{label}.levels")
    clean_nodes = {key: nodes[key] for key in ("filter", "levels") if key in nodes}
    if all(values.get(key) not in (None, INVALID) for key in clean_nodes):
        _model_clean(
            reader,
            Scorecard(filter=values.get("filter", ""), levels=values.get("levels", [])),
            clean_nodes,
            label,
        )
    if "checks" in nodes:
        values["checks"] = _read_entries(reader, nodes["checks"], label, declared_checks)
    return ObjectSpec(**spec)


def checks_read(reader: ConfigReader, node: yaml.Node, plan: Plan) -> list[ObjectSpec]:
    return _read_items(reader, node, "checks", "check", _read_check)


def scorecards_read(reader: ConfigReader, node: yaml.Node, plan: Plan) -> list[ObjectSpec]:
    declared = {spec.name for spec in plan.sections.get("checks", [])}
    return _read_items(
        reader,
        node,
        "scorecards",
        "scorecard",
        lambda reader, item, where: _read_scorecard(reader, item, where, declared),
    )


def _check_apply(spec: ObjectSpec) -> Outcome:
    existing = Check.objects.filter(name=spec.name).first()
    if existing is None:
        services.check_create(name=spec.name, **spec.values)
        return Outcome("check", spec.name, "created")
    changes = {key: value for key, value in spec.values.items() if getattr(existing, key) != value}
    if not changes:
        return Outcome("check", spec.name, "unchanged")
    services.check_update(check=existing, **changes)
    return Outcome("check", spec.name, "updated", tuple(sorted(changes)))


def _scorecard_apply(spec: ObjectSpec) -> Outcome | None:
    """``None`` when a check it names was refused earlier in the file (already reported)."""
    values = dict(spec.values)
    declared_entries = values.pop("checks", None)
    checks = None
    if declared_entries is not None:
        by_name = Check.objects.in_bulk([name for name, _ in declared_entries], field_name="name")
        if len(by_name) < len(declared_entries):
            return None
        checks = [{"check": by_name[name], "weight": weight} for name, weight in declared_entries]
    existing = Scorecard.objects.filter(name=spec.name).first()
    if existing is None:
        services.scorecard_create(name=spec.name, checks=checks, **values)
        return Outcome("scorecard", spec.name, "created")
    changes = {key: value for key, value in values.items() if getattr(existing, key) != value}
    current = {
        entry.check_item.name: entry.weight
        for entry in existing.entries.select_related("check_item")
    }
    if declared_entries is not None and current != dict(declared_entries):
        changes["checks"] = checks
    if not changes:
        return Outcome("scorecard", spec.name, "unchanged")
    services.scorecard_update(scorecard=existing, **changes)
    return Outcome("scorecard", spec.name, "updated", tuple(sorted(changes)))


def _apply_each(specs: list[ObjectSpec], noun: str, apply_one) -> tuple[list, list]:
    outcomes, errors = [], []
    for spec in specs:
        try:
            outcome = apply_one(spec)
        except ValidationError as exc:
            errors.extend(config_error_lines(exc, spec.lines, spec.line, f"{noun} {spec.name}"))
            continue
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes, errors


def checks_apply(specs: list[ObjectSpec]) -> tuple[list, list]:
    return _apply_each(specs, "check", _check_apply)


def scorecards_apply(specs: list[ObjectSpec]) -> tuple[list, list]:
    return _apply_each(specs, "scorecard", _scorecard_apply)


CHECKS_SECTION = ConfigSection("checks", checks_read, checks_apply)
SCORECARDS_SECTION = ConfigSection("scorecards", scorecards_read, scorecards_apply)
