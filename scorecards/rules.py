"""The rule language of checks: JMESPath paths over an entity's rule document, compared with a
value, combined with ``all`` / ``any`` / ``not``. Rules are data; nothing in them is executed.

The document a rule reads::

    {"entity": <the Backstage envelope: apiVersion, kind, metadata, spec, relations>,
     "properties": <the ingested properties, e.g. {"BitbucketCloud": {...}}>,
     "metrics": {<metric>: {"value", "n", "status", "window_days", "last_30_days"?: {...}}}}

A rule is one of::

    {"path": "metrics.pr_cycle_time_p85_days.value", "op": "<", "value": 3}
    {"path": "entity.spec.owner", "op": "exists"}
    {"all": [rule, ...]}   {"any": [rule, ...]}   {"not": rule}

Validation (:func:`rule_validate`) refuses what can never work, naming the part: a path that does
not parse, a path whose top-level field is not ``entity``/``properties``/``metrics``, an unknown
metric, an operator that does not exist or a value of the wrong type for it. Evaluation
(:func:`rule_evaluate`) never raises: what cannot be evaluated is ``error`` with the reason.
"""

import json
import math
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from catalog.query import QueryError, filters_q

TOP_LEVEL_FIELDS = ("entity", "properties", "metrics")
ORDERING_OPS = ("<", "<=", ">", ">=")
OPS = ("==", "!=", *ORDERING_OPS, "exists", "in", "contains")
MAX_DEPTH = 10


class RuleError(ValueError):
    """A rule (or a scorecard's filter or levels) that cannot be saved; the message names the
    part."""


@dataclass
class Outcome:
    status: str  # "pass" | "fail" | "error"
    value: Any = None
    reason: str = ""
    parts: list["Outcome"] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"status": self.status, "value": self.value, "reason": self.reason}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _root_fields(node: dict) -> list[str]:
    """The fields a JMESPath AST reads from the document itself (not from a value it reached)."""
    kind = node.get("type")
    children = node.get("children") or []
    if kind == "field":
        return [node["value"]]
    if kind in (
        "subexpression",
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "flatten",
        "pipe",
    ):
        return _root_fields(children[0]) if children else []
    if kind in (
        "function_expression",
        "comparator",
        "and_expression",
        "or_expression",
        "not_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
    ):
        return [name for child in children for name in _root_fields(child)]
    return []


def _metric_named(node: dict) -> str | None:
    """``x`` of a path starting ``metrics.x``."""
    while node.get("type") in ("subexpression", "index_expression", "projection") and node.get(
        "children"
    ):
        first = node["children"][0]
        if first.get("type") == "field" and first["value"] == "metrics":
            second = node["children"][1] if len(node["children"]) > 1 else {}
            while second.get("type") == "subexpression" and second.get("children"):
                second = second["children"][0]
            return second.get("value") if second.get("type") == "field" else None
        node = first
    return None


def path_validate(path: Any, where: str = "path") -> None:
    from scorecards.metrics import METRICS

    if not isinstance(path, str) or not path.strip():
        raise RuleError(f"{where}: must be a non-empty JMESPath expression")
    try:
        parsed = jmespath.compile(path).parsed
    except JMESPathError as exc:
        raise RuleError(f"{where}: {path!r} is not a valid JMESPath expression ({exc})") from exc
    roots = _root_fields(parsed)
    if not roots:
        raise RuleError(
            f"{where}: {path!r} reads nothing; start it with entity, properties or metrics"
        )
    for name in roots:
        if name not in TOP_LEVEL_FIELDS:
            raise RuleError(
                f"{where}: unknown top-level field {name!r} in {path!r}; use one of "
                + ", ".join(TOP_LEVEL_FIELDS)
            )
    metric = _metric_named(parsed)
    if metric is not None and metric not in METRICS:
        raise RuleError(
            f"{where}: unknown metric {metric!r} in {path!r}; known: " + ", ".join(sorted(METRICS))
        )


def rule_validate(rule: Any, where: str = "rule", depth: int = 0) -> None:
    """Raise :class:`RuleError` naming the first part of ``rule`` that cannot work."""
    if depth > MAX_DEPTH:
        raise RuleError(f"{where}: rules nest at most {MAX_DEPTH} deep")
    if not isinstance(rule, dict):
        raise RuleError(f"{where}: must be an object with path/op/value, all, any or not")
    for combinator in ("all", "any"):
        if combinator in rule:
            if set(rule) != {combinator}:
                raise RuleError(f"{where}: {combinator!r} must be the only key of its object")
            parts = rule[combinator]
            if not isinstance(parts, list) or not parts:
                raise RuleError(f"{where}.{combinator}: must be a non-empty list of rules")
            for index, part in enumerate(parts):
                rule_validate(part, f"{where}.{combinator}[{index}]", depth + 1)
            return
    if "not" in rule:
        if set(rule) != {"not"}:
            raise RuleError(f"{where}: 'not' must be the only key of its object")
        rule_validate(rule["not"], f"{where}.not", depth + 1)
        return
    unknown = set(rule) - {"path", "op", "value"}
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    path_validate(rule.get("path"), f"{where}.path")
    op = rule.get("op")
    if op not in OPS:
        raise RuleError(f"{where}.op: {op!r} is not an operator; use one of {', '.join(OPS)}")
    if op == "exists":
        if "value" in rule:
            raise RuleError(f"{where}.value: 'exists' takes no value")
        return
    if "value" not in rule:
        raise RuleError(f"{where}.value: {op!r} needs a value")
    value = rule["value"]
    if op in ORDERING_OPS and not (_is_number(value) and math.isfinite(value)):
        raise RuleError(f"{where}.value: {op!r} compares numbers, got {value!r}")
    if op == "in" and not isinstance(value, list):
        raise RuleError(f"{where}.value: 'in' needs a list, got {value!r}")
    if op == "contains" and not isinstance(value, str | int | float | bool):
        raise RuleError(f"{where}.value: 'contains' needs a string, number or boolean")


def rule_evaluate(rule: Any, document: dict) -> Outcome:
    """``pass``, ``fail`` or ``error`` (with the reason) — never an exception."""
    try:
        return _evaluate(rule, document)
    except Exception as exc:  # a stored rule that was never validated, or a surprising document
        return Outcome("error", reason=f"cannot evaluate: {exc}")


def _evaluate(rule: dict, document: dict) -> Outcome:
    if "all" in rule or "any" in rule:
        all_of = "all" in rule
        parts = [_evaluate(part, document) for part in rule["all" if all_of else "any"]]
        statuses = {part.status for part in parts}
        decisive, other = ("fail", "pass") if all_of else ("pass", "fail")
        status = decisive if decisive in statuses else "error" if "error" in statuses else other
        reasons = "; ".join(part.reason for part in parts if part.status == status and part.reason)
        return Outcome(status, [part.value for part in parts], reasons, parts)
    if "not" in rule:
        inner = _evaluate(rule["not"], document)
        flipped = {"pass": "fail", "fail": "pass"}.get(inner.status, "error")
        return Outcome(flipped, inner.value, inner.reason, [inner])
    path, op = rule["path"], rule["op"]
    try:
        actual = jmespath.search(path, document)
    except JMESPathError as exc:
        return Outcome("error", reason=f"{path}: {exc}")
    return leaf_outcome(op, rule.get("value"), path, actual)


def leaf_outcome(op: str, expected: Any, path: str, actual: Any) -> Outcome:
    """What ``op`` says of the value a path found (``None``: nothing there). The reasons quote
    values as JSON, as the database writes them (:func:`json_text`), so both ways of
    evaluating give the same text."""
    if op == "exists":
        found = actual is not None and actual != "" and actual != [] and actual != {}
        return Outcome("pass" if found else "fail", actual, "" if found else f"{path} is not set")
    if op in ("==", "!="):
        equal = json_equal(actual, expected)
        ok = equal if op == "==" else not equal
        return _judged(ok, actual, f"{path} is {json_text(actual)}")
    if op in ORDERING_OPS:
        if actual is None:
            return Outcome("fail", None, f"{path} has no value")
        if not _is_number(actual):
            reason = f"{path} is {json_text(actual)}, not a number, for {op!r}"
            return Outcome("error", actual, reason)
        ok = {
            "<": actual < expected,
            "<=": actual <= expected,
            ">": actual > expected,
            ">=": actual >= expected,
        }[op]
        return _judged(ok, actual, f"{path} is {json_text(actual)}, not {op} {expected}")
    if op == "in":
        ok = any(json_equal(actual, item) for item in expected)
        return _judged(ok, actual, f"{path} is {json_text(actual)}")
    # contains
    if isinstance(actual, str) and isinstance(expected, str):
        ok = expected in actual
    elif isinstance(actual, list):
        ok = any(json_equal(item, expected) for item in actual)
    elif actual is None:
        return Outcome("fail", None, f"{path} has no value")
    else:
        reason = f"{path} is {json_text(actual)}: 'contains' needs a list or string"
        return Outcome("error", actual, reason)
    return _judged(ok, actual, f"{path} lacks {expected!r}")


def _judged(ok: bool, actual: Any, reason: str) -> Outcome:
    return Outcome("pass", actual) if ok else Outcome("fail", actual, reason)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1`` (Python's ``True == 1`` is), numbers
    compare by value (``1`` is ``1.0``), lists in order, objects by keys."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    return type(a) is type(b) and a == b


def _jsonb_key(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


def _jsonb_ordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonb_ordered(value[k]) for k in sorted(value, key=_jsonb_key)}
    if isinstance(value, list):
        return [_jsonb_ordered(item) for item in value]
    return value


def json_text(value: Any) -> str:
    """A value as PostgreSQL prints it as ``jsonb`` (keys shorter first, then bytewise; no
    ASCII escaping): what reasons quote, the same text whichever way a rule was evaluated."""
    return json.dumps(_jsonb_ordered(value), ensure_ascii=False)


def filter_validate(value: Any) -> None:
    """A scorecard's filter: the catalog's ``filter`` syntax, or empty for every entity."""
    if not isinstance(value, str):
        raise RuleError("filter: must be a string like kind=component,spec.type=service")
    try:
        filters_q([value]) if value.strip() else None
    except QueryError as exc:
        raise RuleError(f"filter: {exc}") from exc


def levels_validate(value: Any) -> None:
    if not isinstance(value, list):
        raise RuleError('levels: must be a list like [{"name": "Bronze", "threshold": 50}]')
    names, thresholds = set(), set()
    for index, level in enumerate(value):
        where = f"levels[{index}]"
        if not isinstance(level, dict) or set(level) != {"name", "threshold"}:
            raise RuleError(f"{where}: must be an object with exactly name and threshold")
        name, threshold = level["name"], level["threshold"]
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise RuleError(f"{where}.name: must be a non-empty string of at most 100 characters")
        if not _is_number(threshold) or not 0 <= threshold <= 100:
            raise RuleError(f"{where}.threshold: must be a number from 0 to 100, got {threshold!r}")
        if name in names:
            raise RuleError(f"{where}.name: {name!r} is used twice")
        if threshold in thresholds:
            raise RuleError(f"{where}.threshold: {threshold} is used twice")
        names.add(name)
        thresholds.add(threshold)


def level_for(score: float, levels: list[dict]) -> str:
    """The highest level whose threshold the score reaches; empty below the lowest."""
    reached = [level for level in levels if score >= level["threshold"]]
    return max(reached, key=lambda level: level["threshold"])["name"] if reached else ""
