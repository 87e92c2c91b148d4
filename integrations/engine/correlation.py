"""Correlation: which catalog entity a discovered record is, by the integration's rules.

The index is built once per run — for every rule, catalog value → entity ids — so matching N
records against M entities costs O(N + M) lookups, never N×M comparisons.

Rules combine with AND: an entity matches a record when every rule matches it. ``equals``
compares case-insensitively (a list on the catalog side matches when any item is equal);
``contains`` holds when the catalog value is a list with an item equal to the ingested value, or a
string that contains it as a whole sequence of words (split on anything not a letter or digit).
"""

import gc
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import jmespath

from catalog.models import Entity
from catalog.refs import stringify_entity_ref
from catalog.rendering import entity_document
from catalog.selectors import entities_in_scope
from integrations.choices import Operator
from integrations.engine.mapping import search

_WORD = re.compile(r"[a-z0-9]+")


def _norm(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower() or None


def _words(value: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(value.lower()))


@dataclass(frozen=True)
class Rule:
    ingested_path: str
    catalog_path: str
    operator: str = Operator.EQUALS


@dataclass
class _RuleIndex:
    rule: Rule
    # Reads the rule's catalog value straight from the entity's columns (None: render the
    # document and search it).
    getter: Callable[[Any], Any] | None = None
    exact: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    # contains on strings: word → (entity id, words of the catalog string)
    by_word: dict[str, list[tuple[int, tuple[str, ...]]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    # entity id → (exact keys, words) it was indexed under, so an entity can be re-indexed
    keys: dict[int, tuple[set[str], set[str]]] = field(default_factory=dict)

    def add(self, entity_id: int, value: Any) -> None:
        exact_keys, word_keys = self.keys.setdefault(entity_id, (set(), set()))
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = _norm(item)
            if text is None:
                continue
            self.exact[text].add(entity_id)
            exact_keys.add(text)
            if self.rule.operator == Operator.CONTAINS and not isinstance(value, list):
                words = _words(text)
                for word in set(words):
                    self.by_word[word].append((entity_id, words))
                    word_keys.add(word)

    def discard(self, entity_id: int) -> None:
        exact_keys, word_keys = self.keys.pop(entity_id, ((), ()))
        for text in exact_keys:
            self.exact[text].discard(entity_id)
        for word in word_keys:
            self.by_word[word] = [item for item in self.by_word[word] if item[0] != entity_id]

    def matches(self, ingested: Any) -> set[int]:
        text = _norm(ingested)
        if text is None:
            return set()
        if self.rule.operator == Operator.EQUALS:
            return set(self.exact.get(text, ()))
        found = set(self.exact.get(text, ()))
        needle = _words(text)
        if needle:
            # Scan the shortest posting list: the rarest word of the needle.
            rarest = min(needle, key=lambda word: len(self.by_word.get(word, ())))
            for entity_id, words in self.by_word.get(rarest, ()):
                if entity_id not in found and _contains_sequence(words, needle):
                    found.add(entity_id)
        return found


def _contains_sequence(words: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    size = len(needle)
    return any(words[i : i + size] == needle for i in range(len(words) - size + 1))


class CorrelationIndex:
    """Built once per run from the candidate entities; answers ``match(record_data)``."""

    def __init__(self, rules: Iterable[Rule], entities: Iterable[Entity], kind: str = ""):
        self.rules = list(rules)
        self.kind = kind.lower()
        self._indexes = [_RuleIndex(rule, column_getter(rule.catalog_path)) for rule in self.rules]
        self.refs: dict[int, str] = {}
        self.changed = False  # whether update() changed the index since it was built
        # Hundreds of thousands of small acyclic containers: without pausing the cyclic garbage
        # collector, its repeated full passes over a large process heap cost more than the build.
        enabled = gc.isenabled()
        gc.disable()
        try:
            for entity in entities:
                self._add(entity)
        finally:
            if enabled:
                gc.enable()

    def _add(self, entity: Entity) -> None:
        self.refs[entity.pk] = entity.ref
        document = None
        for index in self._indexes:
            if index.getter is not None:
                value = index.getter(entity)
            else:
                document = document or entity_document(entity)
                value = search(index.rule.catalog_path, document)
            index.add(entity.pk, value)

    def update(self, entities: Iterable[Entity]) -> None:
        """Re-index entities the run itself wrote (imported, refreshed), so later pages — and
        a re-run after a crash — see the same catalog."""
        for entity in entities:
            for index in self._indexes:
                index.discard(entity.pk)
            self.refs.pop(entity.pk, None)
            if not self.kind or entity.kind.lower() == self.kind:
                self._add(entity)
            self.changed = True

    def match(self, record_data: dict) -> list[int]:
        """Ids of the entities every rule matches (sorted); empty without rules."""
        if not self._indexes:
            return []
        result: set[int] | None = None
        for index in self._indexes:
            found = index.matches(search(index.rule.ingested_path, record_data))
            result = found if result is None else result & found
            if not result:
                return []
        return sorted(result or ())


def correlation_index_build(*, integration) -> CorrelationIndex:
    """The index for one integration: its rules over the entities of its kind."""
    # Only entities the integration's scope may touch: no suggestion leaks another scope's.
    return correlation_index_for(integration, entities_in_scope(scope=integration.scope))


def correlation_index_for(integration, candidates) -> CorrelationIndex:
    """The integration's rules over the ``candidates`` of its kind."""
    rules = [
        Rule(rule.ingested_path, rule.catalog_path, rule.operator)
        for rule in integration.correlation_rules.all()
    ]
    entities = index_entities(candidates.filter(kind__iexact=integration.entity_kind), rules)
    return CorrelationIndex(rules, entities, kind=integration.entity_kind)


# The document columns (``Entity`` fields) behind each part of a rendered document.
_METADATA_COLUMNS = {
    "name": "name",
    "namespace": "namespace",
    "uid": "uid",
    "etag": "etag",
    "title": "title",
    "description": "description",
    "labels": "labels",
    "annotations": "annotations",
    "tags": "tags",
    "links": "links",
    "integration": "integration_links",
}
_TOP_COLUMNS = {
    "apiVersion": {"api_version"},
    "kind": {"kind"},
    "spec": {"spec"},
    "integration_properties": {"integration_properties"},
    "metadata": {*_METADATA_COLUMNS.values(), "metadata_extra"},
}
_ALL_COLUMNS = set().union(*_TOP_COLUMNS.values())
_IDENTITY = ("id", "kind", "namespace", "name")  # what every indexed entity needs (its ref)


def _leading_fields(node: dict) -> list[str]:
    """``metadata.annotations."x"`` → ``["metadata", "annotations", "x"]``; only the plain
    field chain at the start of a JMESPath expression (empty when it starts otherwise)."""
    if node.get("type") == "field":
        return [node["value"]]
    if node.get("type") in ("subexpression", "index_expression") and node.get("children"):
        fields = _leading_fields(node["children"][0])
        if len(fields) == 1 and len(node["children"]) > 1:
            fields += _leading_fields(node["children"][1])[:1]
        return fields
    return []


def _field_chain(node: dict) -> list[str] | None:
    """The fields of an expression that is nothing but a chain of fields, else None."""
    if node.get("type") == "field":
        return [node["value"]]
    if node.get("type") == "subexpression":
        chain = []
        for child in node.get("children", []):
            fields = _field_chain(child)
            if fields is None:
                return None
            chain += fields
        return chain
    return None


# Document parts that entity_document leaves out when empty.
_OMITTED_WHEN_EMPTY = {"title", "description", "labels", "annotations", "tags", "links"}


def column_getter(path: str) -> Callable[[Any], Any] | None:
    """For a catalog path that is a plain chain of fields (``metadata.name``,
    ``metadata.annotations."x"``, ``spec.owner``), a function reading from an entity's columns
    exactly what ``search(path, entity_document(entity))`` returns, without rendering the
    document; None for any other expression."""
    try:
        chain = _field_chain(jmespath.compile(path).parsed)
    except jmespath.exceptions.JMESPathError:
        return None
    if not chain:
        return None
    head, rest = chain[0], chain[1:]
    if head == "metadata" and rest:
        key, rest = rest[0], rest[1:]
        column = _METADATA_COLUMNS.get(key)

        def start(entity):
            if column is None:
                return (entity.metadata_extra or {}).get(key)
            value = getattr(entity, column)
            if column == "uid":
                return str(value)
            if not value and (key in _OMITTED_WHEN_EMPTY or key == "integration"):
                return (entity.metadata_extra or {}).get(key)  # as metadata.setdefault does
            return value

    elif head == "spec":

        def start(entity):
            return entity.spec or {}

    elif head in ("kind", "apiVersion", "integration_properties"):
        column = {"apiVersion": "api_version"}.get(head, head)

        def start(entity):
            return getattr(entity, column) or None

    else:
        return None

    def getter(entity):
        value = start(entity)
        for key in rest:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return getter


def _columns(rules: Iterable[Rule] | None) -> set[str]:
    """The columns the rules' catalog paths read: JSON columns are decoded only when needed."""
    if rules is None:
        return _ALL_COLUMNS
    columns: set[str] = set()
    for rule in rules:
        try:
            fields = _leading_fields(jmespath.compile(rule.catalog_path).parsed)
        except jmespath.exceptions.JMESPathError:
            fields = []
        if not fields:
            return _ALL_COLUMNS
        if fields[0] == "metadata" and len(fields) > 1:
            columns.add(_METADATA_COLUMNS.get(fields[1], "metadata_extra"))
        else:
            columns |= _TOP_COLUMNS.get(fields[0], set())
    return columns


class IndexedEntity(SimpleNamespace):
    """The columns of an entity that an index reads, the others empty: it renders through
    :func:`entity_document` like an ``Entity`` without the cost of a model instance."""

    EMPTY = {
        "api_version": "",
        "uid": "",
        "etag": "",
        "title": "",
        "description": "",
        "labels": {},
        "annotations": {},
        "tags": [],
        "links": [],
        "metadata_extra": {},
        "integration_links": [],
        "spec": {},
        "integration_properties": {},
    }

    @property
    def pk(self) -> int:
        return self.id

    @property
    def ref(self) -> str:
        return stringify_entity_ref(self.kind, self.namespace, self.name)


def index_entities(queryset, rules: Iterable[Rule] | None = None) -> Iterator[IndexedEntity]:
    """The entities of ``queryset``, streamed, with only the columns the rules read (all a
    rendered document has without ``rules``)."""
    columns = sorted(set(_IDENTITY) | _columns(rules))
    for values in queryset.values(*columns).iterator(chunk_size=2000):
        yield IndexedEntity(**{**IndexedEntity.EMPTY, **values})
