# ruff: noqa: S608 - the SQL holds aliases, fixed columns, checked operators; values are params
"""Scorecards evaluated in PostgreSQL: rules compiled to SQL expressions, a scorecard's score,
level and per-check results computed and written by one ``INSERT … SELECT`` over the entities
its filter selects.

A rule compiles when each of its paths is a plain chain of fields that maps to stored columns:
``metrics.<metric>.<value|n|status|window_days>`` (and ``.last_30_days.<…>``) read from the
metric rows; ``entity.apiVersion``, ``entity.kind``, ``entity.metadata.*``, ``entity.spec.*`` and
``properties.*`` from the entity's columns, as :func:`catalog.rendering.entity_document` renders
them. Anything else (functions, indexes, projections, ``entity.relations``, a bare
``entity.metadata``) raises :class:`NotCompilable` and the scorecard is evaluated in Python
(:func:`scorecards.rules.rule_evaluate`). Both give the same status, value and reason for every
entity, which a test checks rule by rule; the reasons quote values as ``jsonb`` text.

Every node of a rule becomes one ``LATERAL`` subquery with columns ``s`` (status), ``v`` (the
value, ``jsonb``) and ``r`` (reason), so the statement grows with the size of the rules, never
with the number of entities.
"""

import json
from dataclasses import dataclass, field
from typing import Any

import jmespath

from scorecards.metrics import METRICS
from scorecards.rules import ORDERING_OPS, level_for

METRIC_FIELDS = {"value", "n", "status", "window_days"}
# Scores are looked up by the weight passed (0 … total): a table this long at most.
MAX_TOTAL_WEIGHT = 10_000


class NotCompilable(Exception):
    """A rule (or scorecard) the SQL evaluation does not cover; Python evaluates it."""


@dataclass
class _Sql:
    text: str
    params: list = field(default_factory=list)


def _fields(path: str) -> list[str]:
    """The field names of a path that is only fields (``a.b."c.d"``)."""
    try:
        node = jmespath.compile(path).parsed
    except Exception as exc:
        raise NotCompilable(path) from exc

    def walk(node: dict) -> list[str]:
        if node.get("type") == "field":
            return [node["value"]]
        if node.get("type") == "subexpression":
            return [name for child in node["children"] for name in walk(child)]
        raise NotCompilable(path)

    names = walk(node)
    # jsonb's #> reads an array's element for a key of digits, where JMESPath finds nothing.
    if any(name.isdigit() for name in names):
        raise NotCompilable(path)
    return names


def _json(value: Any) -> str:
    return json.dumps(value)


# Python's repr of a float: integral values keep ".0" (to_jsonb(3.0::float8) gives 3).
_FLOAT_JSONB = (
    "CASE WHEN {c} IS NULL THEN NULL WHEN {c} = trunc({c}) AND abs({c}) < 1e16 "
    "THEN (trunc({c})::numeric::text || '.0')::jsonb ELSE to_jsonb({c}) END"
)


class ScorecardCompiler:
    """Collects what one scorecard's rules read: the metric rows (as columns of one pivot row per
    entity, ``m.<prefix>_<field>``) and the rule nodes."""

    def __init__(self) -> None:
        self.metric_columns: dict[tuple[str, int], str] = {}
        self.nodes: list[_Sql] = []

    # -- values -----------------------------------------------------------------------------

    def _metric_value(self, names: list[str]) -> _Sql:
        metric, rest = names[1] if len(names) > 1 else None, names[2:]
        spec = METRICS.get(metric)
        if spec is None:
            raise NotCompilable(".".join(names))
        window = 90 if spec.windowed else 0
        if rest[:1] == ["last_30_days"]:
            if not spec.windowed:
                if len(rest) != 2 or rest[1] not in METRIC_FIELDS:
                    raise NotCompilable(".".join(names))
                return _Sql("NULL::jsonb")
            window, rest = 30, rest[1:]
        if len(rest) != 1 or rest[0] not in METRIC_FIELDS:
            raise NotCompilable(".".join(names))
        alias = self.metric_columns.setdefault((metric, window), f"m{len(self.metric_columns)}")
        column = f"m.{alias}_{rest[0]}"
        if rest[0] == "value":
            return _Sql(_FLOAT_JSONB.format(c=column))
        return _Sql(f"to_jsonb({column})")

    @staticmethod
    def _below(base: str, rest: list[str]) -> _Sql:
        if not rest:
            return _Sql(base)
        return _Sql(f"({base}) #> %s::text[]", [rest])

    def _entity_value(self, names: list[str]) -> _Sql:
        rest = names[1:]
        if rest in (["apiVersion"], ["kind"]):
            return _Sql(f"to_jsonb(e.{'api_version' if rest[0] == 'apiVersion' else 'kind'})")
        if rest[:1] == ["spec"]:
            return self._below("coalesce(e.spec::jsonb, '{}'::jsonb)", rest[1:])
        if rest[:1] != ["metadata"] or len(rest) < 2:
            raise NotCompilable(".".join(names))
        key, below = rest[1], rest[2:]
        extra = "e.metadata_extra::jsonb"
        if key in ("name", "namespace", "etag", "uid"):
            if below:
                raise NotCompilable(".".join(names))
            return _Sql(f"to_jsonb(e.{key}::text)")
        if key in ("title", "description"):
            if below:
                raise NotCompilable(".".join(names))
            return _Sql(f"coalesce(to_jsonb(nullif(e.{key}, '')), {extra} -> %s)", [key])
        if key in ("labels", "annotations", "tags", "links"):
            base = f"coalesce(nullif(nullif(e.{key}::jsonb, '{{}}'), '[]'), {extra} -> %s)"
            value = self._below(base, below)
            return _Sql(value.text, [key, *value.params])
        if key == "integration":
            base = f"coalesce(nullif(e.integration_links::jsonb, '[]'), {extra} -> %s)"
            value = self._below(base, below)
            return _Sql(value.text, [key, *value.params])
        return self._below(extra, rest[1:])

    def _value(self, path: str) -> _Sql:
        names = _fields(path)
        if names[0] == "metrics":
            value = self._metric_value(names)
        elif names[0] == "entity":
            value = self._entity_value(names)
        elif names[0] == "properties":
            value = self._below("coalesce(e.integration_properties::jsonb, '{}'::jsonb)", names[1:])
        else:
            raise NotCompilable(path)
        # JSON null and nothing there are both "no value" to the rules.
        return _Sql(f"nullif({value.text}, 'null'::jsonb)", value.params)

    # -- nodes ------------------------------------------------------------------------------

    def _add(self, text: str, params: list) -> str:
        alias = f"n{len(self.nodes)}"
        # OFFSET 0 keeps each node a subquery of its own, computed once per entity: flattened,
        # the planner would copy a node's expression into every node that reads it.
        self.nodes.append(_Sql(f"CROSS JOIN LATERAL ({text} OFFSET 0) {alias}", params))
        return alias

    def rule(self, rule: Any) -> str:
        """The alias of the subquery giving the rule's ``s``, ``v``, ``r``."""
        if not isinstance(rule, dict):
            raise NotCompilable(repr(rule))
        for combinator in ("all", "any"):
            if combinator in rule:
                return self._combination(combinator, rule[combinator])
        if "not" in rule:
            inner = self.rule(rule["not"])
            return self._add(
                f"SELECT CASE {inner}.s WHEN 'pass' THEN 'fail' WHEN 'fail' THEN 'pass' "
                f"ELSE 'error' END AS s, {inner}.v AS v, {inner}.r AS r",
                [],
            )
        return self._leaf(rule)

    def _combination(self, combinator: str, parts: list) -> str:
        if not isinstance(parts, list) or not parts:
            raise NotCompilable(combinator)
        aliases = [self.rule(part) for part in parts]
        decisive, other = ("fail", "pass") if combinator == "all" else ("pass", "fail")
        statuses = ", ".join(f"{a}.s" for a in aliases)
        values = ", ".join(f"{a}.v" for a in aliases)
        reasons = ", ".join(
            f"CASE WHEN {a}.s = st.s AND {a}.r <> '' THEN {a}.r END" for a in aliases
        )
        return self._add(
            f"SELECT st.s, jsonb_build_array({values}) AS v, concat_ws('; ', {reasons}) AS r "
            f"FROM (SELECT CASE WHEN '{decisive}' IN ({statuses}) THEN '{decisive}' "
            f"WHEN 'error' IN ({statuses}) THEN 'error' ELSE '{other}' END AS s OFFSET 0) st",
            [],
        )

    def _leaf(self, rule: dict) -> str:
        path, op, expected = rule.get("path"), rule.get("op"), rule.get("value")
        if not isinstance(path, str):
            raise NotCompilable(repr(rule))
        value = self._value(path)
        status, status_params, reason, reason_params = _judgement(op, expected, path)
        return self._add(
            f"SELECT st.s AS s, x.a AS v, {reason} AS r FROM (SELECT {value.text} AS a OFFSET 0) x "
            f"CROSS JOIN LATERAL (SELECT {status} AS s OFFSET 0) st",
            [*reason_params, *value.params, *status_params],
        )


_A = "x.a"  # the value found
_TEXT = "coalesce(x.a::text, 'null')"  # as reasons quote it (rules.json_text)
_PASSED = "st.s = 'pass'"


def _judgement(op: str, expected: Any, path: str) -> tuple[str, list, str, list]:
    """SQL (with params) for the status of ``op`` over ``x.a``, and for the reason given that
    status ``st.s``, as :func:`scorecards.rules.leaf_outcome` decides them."""
    if op == "exists":
        found = f"({_A} IS NOT NULL AND {_A} NOT IN ('\"\"', '[]', '{{}}'))"
        return (
            f"CASE WHEN {found} THEN 'pass' ELSE 'fail' END",
            [],
            f"CASE WHEN {_PASSED} THEN '' ELSE %s END",
            [f"{path} is not set"],
        )
    quoted = f"CASE WHEN {_PASSED} THEN '' ELSE %s || {_TEXT} END"
    if op in ("==", "!="):
        equal = f"coalesce({_A}, 'null'::jsonb) = %s::jsonb"
        ok = equal if op == "==" else f"NOT ({equal})"
        status = f"CASE WHEN {ok} THEN 'pass' ELSE 'fail' END"
        return status, [_json(expected)], quoted, [f"{path} is "]
    if op == "in":
        if not isinstance(expected, list):
            raise NotCompilable(path)
        ok = f"coalesce({_A}, 'null'::jsonb) = ANY(%s::jsonb[])"
        status = f"CASE WHEN {ok} THEN 'pass' ELSE 'fail' END"
        return status, [[_json(item) for item in expected]], quoted, [f"{path} is "]
    if op in ORDERING_OPS:
        if isinstance(expected, bool) or not isinstance(expected, int | float):
            raise NotCompilable(path)
        status = (
            f"CASE WHEN {_A} IS NULL THEN 'fail' WHEN jsonb_typeof({_A}) <> 'number' "
            f"THEN 'error' WHEN ({_A} #>> '{{}}')::numeric {op} %s::numeric THEN 'pass' "
            "ELSE 'fail' END"
        )
        reason = (
            f"CASE WHEN {_PASSED} THEN '' WHEN {_A} IS NULL THEN %s "
            f"WHEN st.s = 'error' THEN %s || {_TEXT} || %s ELSE %s || {_TEXT} || %s END"
        )
        return (
            status,
            [str(expected)],
            reason,
            [
                f"{path} has no value",
                f"{path} is ",
                f", not a number, for {op!r}",
                f"{path} is ",
                f", not {op} {expected}",
            ],
        )
    if op == "contains":
        if not isinstance(expected, str | int | float | bool):
            raise NotCompilable(path)
        in_list = f"EXISTS (SELECT 1 FROM jsonb_array_elements({_A}) item WHERE item = %s::jsonb)"
        status = (
            f"CASE WHEN jsonb_typeof({_A}) = 'array' "
            f"THEN CASE WHEN {in_list} THEN 'pass' ELSE 'fail' END "
        )
        status_params: list = [_json(expected)]
        if isinstance(expected, str):
            status += (
                f"WHEN jsonb_typeof({_A}) = 'string' "
                f"THEN CASE WHEN strpos({_A} #>> '{{}}', %s) > 0 THEN 'pass' ELSE 'fail' END "
            )
            status_params.append(expected)
        status += f"WHEN {_A} IS NULL THEN 'fail' ELSE 'error' END"
        reason = (
            f"CASE WHEN {_PASSED} THEN '' WHEN {_A} IS NULL THEN %s "
            f"WHEN st.s = 'fail' THEN %s ELSE %s || {_TEXT} || %s END"
        )
        return (
            status,
            status_params,
            reason,
            [
                f"{path} has no value",
                f"{path} lacks {expected!r}",
                f"{path} is ",
                ": 'contains' needs a list or string",
            ],
        )
    raise NotCompilable(f"{path} {op}")


def scorecard_results_sql(*, scorecard, entries: list, selection: tuple[str, list], now) -> _Sql:
    """The statement writing the results of ``scorecard`` for the entities whose ids
    ``selection`` (SQL, params) selects: those ids first, then the metric rows the rules read,
    one row per entity, then each rule node per entity. Raises :class:`NotCompilable`."""
    compiler = ScorecardCompiler()
    tops = [compiler.rule(entry.check_item.rule) for entry in entries]
    total = sum(entry.weight for entry in entries)
    if total > MAX_TOTAL_WEIGHT:
        raise NotCompilable(f"total weight {total}")
    checks = ", ".join(
        f"jsonb_build_object('check_id', %s::bigint, 'name', %s::text, 'weight', %s::int, "
        f"'status', {alias}.s, 'value', {alias}.v, 'reason', {alias}.r)"
        for alias in tops
    )
    check_params = [
        param
        for entry in entries
        for param in (entry.check_item_id, entry.check_item.name, entry.weight)
    ]
    passed = (
        " + ".join(
            f"CASE WHEN {alias}.s = 'pass' THEN {int(entry.weight)} ELSE 0 END"
            for alias, entry in zip(tops, entries, strict=True)
        )
        or "0"
    )
    # Score and level by weight passed (0 … total), as scorecard_evaluate computes them.
    scores = [round(100 * weight / total, 2) if total else 0.0 for weight in range(total + 1)]
    levels = [level_for(score, scorecard.levels) for score in scores]
    pivot = ", ".join(
        f"max({column}) FILTER (WHERE metric = %s AND window_days = %s) AS {alias}_{column}"
        for alias in compiler.metric_columns.values()
        for column in ("value", "n", "status", "window_days")
    )
    pivot_params = [param for key in compiler.metric_columns for _ in range(4) for param in key]
    metrics = (
        f"metrics AS MATERIALIZED (SELECT entity_id, {pivot} FROM scorecards_entitymetric "
        "WHERE entity_id IN (SELECT id FROM selected) AND metric = ANY(%s) GROUP BY entity_id), "
        if compiler.metric_columns
        else "metrics AS (SELECT NULL::bigint AS entity_id), "
    )
    metric_names = [sorted({metric for metric, _ in compiler.metric_columns})] if pivot else []
    selection_sql, selection_params = selection
    text = (
        f"WITH selected AS MATERIALIZED (SELECT q.id FROM ({selection_sql}) q(id)), "
        f"{metrics}"
        "scored AS (SELECT e.id, p.passed, "
        f"jsonb_build_array({checks}) AS checks "
        "FROM selected JOIN catalog_entity e ON e.id = selected.id "
        "LEFT JOIN metrics m ON m.entity_id = e.id\n"
        + "\n".join(node.text for node in compiler.nodes)
        + f"\nCROSS JOIN LATERAL (SELECT {passed} AS passed OFFSET 0) p) "
        "INSERT INTO scorecards_scorecardresult "
        "(scorecard_id, entity_id, score, level, checks, evaluated_at) "
        "SELECT %s, id, (%s::float8[])[passed + 1], (%s::text[])[passed + 1], checks, %s "
        "FROM scored"
    )
    node_params = [param for node in compiler.nodes for param in node.params]
    return _Sql(
        text,
        [
            *selection_params,
            *pivot_params,
            *metric_names,
            *check_params,
            *node_params,
            scorecard.pk,
            scores,
            levels,
            now,
        ],
    )
