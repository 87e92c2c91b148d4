"""The catalog's query language: Backstage filters, filter predicates, ordering and cursors.

Everything here turns into ``Q`` objects over the search and relation tables, so every filter is
an indexed lookup in the database, never a scan of JSON in Python.
"""

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce, Lower

from catalog.models import Entity, EntitySearch, Relation
from catalog.relations import RELATION_TYPES

_RELATION_TYPE_BY_LOWER = {name.lower(): name for name in RELATION_TYPES}
_PRIMITIVES = (str, int, float, bool)


class QueryError(ValueError):
    """Malformed filter, predicate, order or cursor: a 400 InputError for the caller."""


# --- conditions -------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, _PRIMITIVES):
        raise QueryError(f"Filter values must be strings, numbers or booleans, got {value!r}")
    return str(value).lower()


def relation_type_q(relation_type: str) -> Q:
    """Relation rows of a type named in any case (an indexed equality for the known types)."""
    canonical = _RELATION_TYPE_BY_LOWER.get(relation_type.lower())
    return Q(type=canonical) if canonical else Q(type__iexact=relation_type)


@dataclass(frozen=True)
class QueryChoice:
    """One subject of a query field that the entity list offers people (a scorecard): its
    filter key and values, and the order field it sorts by."""

    label: str
    filter_key: str
    values: list[str]
    none_label: str  # what the empty value means (``filter_key=``)
    order_field: str


@dataclass(frozen=True)
class QueryField:
    """Filter keys and order fields under ``prefix`` that another app answers from its own
    tables (the scorecards app: ``scorecard.<name>.level``, ``scorecard.<name>.score``);
    catalog never imports it, so it registers from its ``AppConfig.ready()``.

    ``condition(key, values, prefix)`` is :func:`condition_q` for a key under the prefix
    (lower-cased), and ``order(field)`` the value to sort by: ``(expression over the entity
    row or NULL, a stand-in of the same type for NULL)``; both raise :class:`QueryError` for a
    key they do not know, and both must compile to indexed SQL, never to a query per entity.
    ``choices()`` lists what the entity list offers (one query).
    """

    prefix: str
    condition: Callable[[str, list[Any] | None, Any], Q]
    order: Callable[[str], tuple[Any, Any]]
    choices: Callable[[], list[QueryChoice]]


_query_fields: dict[str, QueryField] = {}


def query_field_register(query_field: QueryField) -> None:
    if query_field.prefix in _query_fields:
        raise ValueError(f"query fields under {query_field.prefix!r} are already registered")
    _query_fields[query_field.prefix] = query_field


def query_field_for(key: str) -> QueryField | None:
    """The registered field answering ``key`` (lower-cased), if any."""
    return next((f for prefix, f in _query_fields.items() if key.startswith(prefix)), None)


def query_choices() -> list[QueryChoice]:
    return [choice for query_field in _query_fields.values() for choice in query_field.choices()]


def condition_q(key: str, values: list[Any] | None = None, prefix: str | None = None) -> Q:
    """Entities having ``key`` (any value when neither ``values`` nor ``prefix`` is given)."""
    key = key.strip().lower()
    if not key:
        raise QueryError("Filter keys must not be empty")
    if (query_field := query_field_for(key)) is not None:
        return query_field.condition(key, values, prefix)
    if key.startswith("relations."):
        rows = Relation.objects.filter(relation_type_q(key.removeprefix("relations.")))
        if values is not None:
            rows = rows.filter(target_key__in=[_text(v) for v in values])
        if prefix is not None:
            rows = rows.filter(target_key__startswith=_text(prefix))
        return Q(ref_key__in=rows.values("source_key"))
    rows = EntitySearch.objects.filter(key=key)
    if values is not None:
        rows = rows.filter(value__in=[_text(v) for v in values])
    if prefix is not None:
        rows = rows.filter(value__startswith=_text(prefix))
    return Q(pk__in=rows.values("entity_id"))


# --- GET filter parameters --------------------------------------------------------------------


def parse_filter_params(filters: list[str]) -> list[dict[str, list[str] | None]]:
    """``filter`` params as Backstage reads them: each param is an AND of ``key[=value]``
    statements (a repeated key ORs its values); several params are ORed."""
    any_of = []
    for raw in filters:
        all_of: dict[str, list[str] | None] = {}
        for statement in raw.split(","):
            statement = statement.strip()
            if not statement:
                continue
            key, sep, value = statement.partition("=")
            key = key.strip()
            if not key:
                raise QueryError(f"Invalid filter {raw!r}: a statement has an empty key")
            if not sep:
                all_of.setdefault(key, None)
                continue
            values = all_of.get(key)
            all_of[key] = [*(values or []), value.strip()]
        if all_of:
            any_of.append(all_of)
    return any_of


def filters_q(filters: list[str]) -> Q | None:
    any_of = parse_filter_params(filters)
    if not any_of:
        return None
    result = Q()
    for index, all_of in enumerate(any_of):
        clause = Q()
        for key, values in all_of.items():
            clause &= condition_q(key, values)
        result = clause if index == 0 else result | clause
    return result


# --- filter predicates (POST bodies) ----------------------------------------------------------


def predicate_q(predicate: Any) -> Q:
    """A ``@backstage/filter-predicates`` predicate as a ``Q`` over the search rows.

    ``{"$all": [...]}``, ``{"$any": [...]}`` and ``{"$not": p}`` must be the only key of their
    object; any other object is an AND of dotted field paths, each a primitive (equality, any row
    of the key, case-insensitive) or one operator: ``$exists``, ``$in``, ``$contains`` (a
    primitive, or ``{type, targetRef}`` on ``relations``) or ``$hasPrefix``. Unknown operators are
    refused, as Backstage's catalog backend refuses them.
    """
    if not isinstance(predicate, dict):
        raise QueryError(f"A filter predicate must be an object, got {predicate!r}")
    logical = {"$all", "$any", "$not"} & set(predicate)
    if logical:
        if len(predicate) != 1:
            raise QueryError(
                f"{sorted(logical)[0]} must be the only key of its object; wrap several "
                "conditions in $all"
            )
        ((operator, operand),) = predicate.items()
        if operator == "$not":
            return ~predicate_q(operand)
        return _logical(operand, operator, all_of=operator == "$all")
    result = Q()
    for key, value in predicate.items():
        if key.startswith("$"):
            raise QueryError(f"Unknown predicate operator {key!r}")
        result &= _field_q(key, value)
    return result


_NOTHING = Q(pk__in=[])


def _logical(items: Any, operator: str, *, all_of: bool) -> Q:
    if not isinstance(items, list):
        raise QueryError(f"{operator} expects a list of predicates")
    if not items:
        # An empty $all matches everything, an empty $any nothing.
        return Q() if all_of else _NOTHING
    result = predicate_q(items[0])
    for item in items[1:]:
        result = (result & predicate_q(item)) if all_of else (result | predicate_q(item))
    return result


def _field_q(key: str, value: Any) -> Q:
    if isinstance(value, _PRIMITIVES):
        return condition_q(key, [value])
    if not isinstance(value, dict) or len(value) != 1:
        raise QueryError(
            f"The condition on {key!r} must be a value or one operator object "
            "($exists, $in, $contains, $hasPrefix)"
        )
    ((operator, operand),) = value.items()
    if operator == "$exists":
        if not isinstance(operand, bool):
            raise QueryError(f"$exists on {key!r} expects true or false")
        q = condition_q(key)
        return q if operand else ~q
    if operator == "$in":
        if not isinstance(operand, list) or not all(isinstance(v, _PRIMITIVES) for v in operand):
            raise QueryError(f"$in on {key!r} expects a list of values")
        return condition_q(key, operand) if operand else _NOTHING
    if operator == "$hasPrefix":
        if not isinstance(operand, str):
            raise QueryError(f"$hasPrefix on {key!r} expects a string")
        return condition_q(key, prefix=operand)
    if operator == "$contains":
        if isinstance(operand, _PRIMITIVES):
            return condition_q(key, [operand])
        if key.lower() == "relations" and isinstance(operand, dict):
            return _relation_contains_q(operand)
        raise QueryError(
            f"$contains on {key!r} supports a value, or {{type, targetRef}} on relations"
        )
    raise QueryError(f"Unknown operator {operator!r} on {key!r}")


def _relation_contains_q(operand: dict) -> Q:
    relation_type = operand.get("type")
    if set(operand) - {"type", "targetRef"} or not isinstance(relation_type, str):
        raise QueryError("$contains on relations expects {type, targetRef?}")
    target = operand.get("targetRef")
    key = f"relations.{relation_type}"
    if target is None:
        return condition_q(key)
    if isinstance(target, str):
        return condition_q(key, [target])
    if isinstance(target, dict) and set(target) == {"$in"} and isinstance(target["$in"], list):
        return condition_q(key, target["$in"]) if target["$in"] else _NOTHING
    raise QueryError("relations targetRef must be a string or {$in: [...]}")


# --- full text --------------------------------------------------------------------------------


def full_text_q(term: str, fields: list[str]) -> Q | None:
    term = (term or "").strip().lower()
    if not term:
        return None
    keys = [f.strip().lower() for f in fields if f.strip()] or ["metadata.name"]
    rows = EntitySearch.objects.filter(key__in=keys, value__contains=term)
    return Q(pk__in=rows.values("entity_id"))


# --- ordering and keyset cursors --------------------------------------------------------------


@dataclass(frozen=True)
class OrderField:
    field: str
    descending: bool = False

    def as_list(self) -> list:
        return [self.field, "desc" if self.descending else "asc"]


def parse_order_params(orders: list[str]) -> list[OrderField]:
    """GET /entities ``order=asc:metadata.name`` (repeatable)."""
    fields = []
    for raw in orders:
        direction, sep, name = raw.partition(":")
        if not sep or direction not in ("asc", "desc") or not name.strip():
            raise QueryError(f"Invalid order {raw!r}: expected asc:<field> or desc:<field>")
        fields.append(OrderField(name.strip(), direction == "desc"))
    return fields


def parse_order_fields(values: list[str]) -> list[OrderField]:
    """by-query ``orderField=metadata.name,asc`` (repeatable; direction defaults to asc)."""
    fields = []
    for raw in values:
        name, _, direction = raw.partition(",")
        direction = direction.strip().lower() or "asc"
        if not name.strip() or direction not in ("asc", "desc"):
            raise QueryError(f"Invalid orderField {raw!r}: expected <field>,asc|desc")
        fields.append(OrderField(name.strip(), direction == "desc"))
    return fields


# Fields every entity has, whose search value is the lower-cased column: ordered by the column
# itself (``metadata.name`` with an index), not by a lookup in the search table for every row.
_ORDER_COLUMNS = {"metadata.name": "name", "metadata.namespace": "namespace", "kind": "kind"}


def ordered(queryset: QuerySet, order: list[OrderField]) -> tuple[QuerySet, list[tuple[str, bool]]]:
    """Order by the given fields (values from the search table, missing values last), then by
    entity ref and id. Returns the queryset and its (alias, descending) sort keys."""
    keys: list[tuple[str, bool]] = []
    annotations: dict[str, Any] = {}
    for index, order_field in enumerate(order):
        name = order_field.field.lower()
        column = _ORDER_COLUMNS.get(name)
        if column is not None:
            annotations[f"_sort{index}"] = Lower(column)
            keys.append((f"_sort{index}", order_field.descending))
            continue
        if (query_field := query_field_for(name)) is not None:
            value, stand_in = query_field.order(name)
        else:
            value = Subquery(
                EntitySearch.objects.filter(entity=OuterRef("pk"), key=name)
                .order_by("value")
                .values("value")[:1]
            )
            stand_in = Value("")
        annotations[f"_missing{index}"] = Case(
            When(Q(**{f"_raw{index}__isnull": True}), then=Value(1)),
            default=Value(0),
            output_field=IntegerField(),
        )
        queryset = queryset.annotate(**{f"_raw{index}": value})
        annotations[f"_sort{index}"] = Coalesce(F(f"_raw{index}"), stand_in)
        keys.append((f"_missing{index}", False))
        keys.append((f"_sort{index}", order_field.descending))
    queryset = queryset.annotate(**annotations)
    keys.append(("ref_key", False))
    keys.append(("pk", False))
    order_by = [F(alias).desc() if desc else F(alias).asc() for alias, desc in keys]
    return queryset.order_by(*order_by), keys


def order_value(entity: Entity, index: int = 0) -> Any:
    """The value :func:`ordered` sorted a row on for its ``index``-th order field (one not
    answered by a column), ``None`` where the row has none."""
    return getattr(entity, f"_raw{index}", None)


def keyset_q(keys: list[tuple[str, bool]], values: list[Any], *, backwards: bool = False) -> Q:
    """Rows strictly after (or before) the row whose sort-key values are ``values``."""
    if len(keys) != len(values):
        raise QueryError("Cursor does not match the requested ordering")
    result = Q(pk__in=[])
    equal_prefix = Q()
    implied = Q()
    for index, ((alias, descending), value) in enumerate(zip(keys, values, strict=True)):
        forward_is_greater = not descending
        if backwards:
            forward_is_greater = not forward_is_greater
        lookup = "gt" if forward_is_greater else "lt"
        result |= equal_prefix & Q(**{f"{alias}__{lookup}": value})
        equal_prefix &= Q(**{alias: value})
        if index == 0 and value is not None:
            # Implied by the disjunction, but a condition the database can start an index scan
            # at: without it, page N of a walk scans and discards the N - 1 pages before it.
            implied = Q(**{f"{alias}__{lookup}e": value})
    return implied & result


def row_key_values(entity: Entity, keys: list[tuple[str, bool]]) -> list[Any]:
    return [getattr(entity, alias) for alias, _ in keys]


@dataclass
class Cursor:
    """What a by-query cursor carries: the query that made it and where the page stopped."""

    filters: list[str] = field(default_factory=list)
    predicate: dict | None = None
    order: list[OrderField] = field(default_factory=list)
    full_text_term: str = ""
    full_text_fields: list[str] = field(default_factory=list)
    total_items: int | None = None
    position: list[Any] | None = None
    backwards: bool = False

    def encode(self) -> str:
        # The client routes a cursor to POST when it decodes to JSON with a "query" key, so only
        # predicate cursors carry one; the encoding is standard base64 as its atob() expects.
        payload: dict[str, Any] = {
            "f": self.filters,
            "o": [o.as_list() for o in self.order],
            "t": self.full_text_term,
            "tf": self.full_text_fields,
            "n": self.total_items,
            "p": self.position,
            "b": self.backwards,
        }
        if self.predicate is not None:
            payload["query"] = self.predicate
        raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
        return base64.b64encode(raw).decode()

    @classmethod
    def decode(cls, token: str) -> "Cursor":
        try:
            padded = token + "=" * (-len(token) % 4)
            payload = json.loads(base64.b64decode(padded.encode(), validate=True))
            return cls(
                filters=list(payload["f"]),
                predicate=payload.get("query"),
                order=[OrderField(name, direction == "desc") for name, direction in payload["o"]],
                full_text_term=payload["t"],
                full_text_fields=list(payload["tf"]),
                total_items=payload["n"],
                position=payload["p"],
                backwards=bool(payload["b"]),
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise QueryError("Malformed cursor") from exc

    def where(self) -> Q:
        q = Q()
        if (filters := filters_q(self.filters)) is not None:
            q &= filters
        if self.predicate is not None:
            q &= predicate_q(self.predicate)
        if (text := full_text_q(self.full_text_term, self.full_text_fields)) is not None:
            q &= text
        return q
