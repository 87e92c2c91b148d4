"""Bitbucket's collection query parameters: BBQL ``q``, ``sort`` and ``fields``.

They work on the JSON documents the API returns (as Bitbucket's do), so any field a client can
see it can filter and sort on, nested paths included (``project.key``, ``destination.branch.name``).
"""

import copy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_MISSING = object()


class QueryError(ValueError):
    """An invalid ``q``, ``sort`` or ``fields`` value (a 400)."""


# -- BBQL --------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\() | (?P<rparen>\)) |
        (?P<op>!=|!~|>=|<=|=|~|>|<) |
        (?P<string>"(?:[^"\\]|\\.)*") |
        (?P<word>[^\s()=!~<>"]+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?(Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE
)
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Literal:
    value: Any
    kind: str  # string | number | boolean | null | datetime


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    literal: Literal


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    parts: tuple


def parse_datetime(text: str) -> datetime | None:
    """ISO-8601 with optional time, fraction and offset; UTC when no offset is given."""
    if not _DATETIME.fullmatch(text):
        return None
    value = text.upper().replace("Z", "+00:00")
    offset = re.search(r"[+-]\d{2}:?\d{2}$", value) if "T" in value else None
    if offset and ":" not in offset.group(0):
        value = value[: offset.start()] + offset.group(0)[:3] + ":" + offset.group(0)[3:]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _Parser:
    def __init__(self, text: str):
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise QueryError(f"Invalid query: unexpected input at {text[position:][:20]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError("Invalid query: unexpected end")
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].upper() == word:
            self.index += 1
            return True
        return False

    def parse(self):
        node = self.expression()
        if self.peek() is not None:
            raise QueryError(f"Invalid query: unexpected {self.peek()[1]!r}")
        return node

    def expression(self):
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))

    def conjunction(self):
        parts = [self.term()]
        while self.keyword("AND"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))

    def term(self):
        kind, text = self.take()
        if kind == "lparen":
            node = self.expression()
            if self.take()[0] != "rparen":
                raise QueryError("Invalid query: missing ')'")
            return node
        if kind != "word" or not _FIELD.fullmatch(text):
            raise QueryError(f"Invalid query: expected a field name, got {text!r}")
        op_kind, op = self.take()
        if op_kind != "op":
            raise QueryError(f"Invalid query: expected an operator after {text!r}")
        return Comparison(text, op, self.literal())

    def literal(self) -> Literal:
        kind, text = self.take()
        if kind == "string":
            return Literal(re.sub(r"\\(.)", r"\1", text[1:-1]), "string")
        if kind != "word":
            raise QueryError(f"Invalid query: expected a value, got {text!r}")
        lowered = text.lower()
        if lowered in ("true", "false"):
            return Literal(lowered == "true", "boolean")
        if lowered == "null":
            return Literal(None, "null")
        if _NUMBER.fullmatch(text):
            return Literal(float(text), "number")
        moment = parse_datetime(text)
        if moment is not None:
            return Literal(moment, "datetime")
        raise QueryError(f"Invalid query: {text!r} is not a value (quote strings)")


def parse_query(text: str):
    return _Parser(text).parse()


def _resolve(document: Any, path: str) -> list[Any]:
    """Values at a dotted path; lists fan out (``reviewers.nickname`` matches any reviewer)."""
    values = [document]
    for segment in path.split("."):
        found = []
        for value in values:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):
                    found.append(item.get(segment, _MISSING))
        values = found
    flat: list[Any] = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    return flat or [_MISSING]


def _compare(value: Any, op: str, literal: Literal) -> bool:
    if value is _MISSING:
        value = None
    expected = literal.value
    if literal.kind == "string" and isinstance(value, str):
        moment = parse_datetime(expected)
        if moment is not None and parse_datetime(value) is not None:
            value, expected = parse_datetime(value), moment  # a quoted datetime, tolerated
    elif literal.kind == "datetime":
        value = parse_datetime(value) if isinstance(value, str) else None
    elif literal.kind == "number" and isinstance(value, bool):
        value = None
    if op in ("~", "!~"):
        if not isinstance(value, str) or not isinstance(expected, str):
            return op == "!~"
        contained = expected.lower() in value.lower()
        return contained if op == "~" else not contained
    if op == "=":
        return value == expected
    if op == "!=":
        return value != expected
    if value is None or expected is None:
        return False
    try:
        if op == ">":
            return value > expected
        if op == ">=":
            return value >= expected
        if op == "<":
            return value < expected
        if op == "<=":
            return value <= expected
    except TypeError:
        return False
    raise QueryError(f"Invalid operator {op}")


def matches(node, document: dict) -> bool:
    if isinstance(node, BoolOp):
        results = (matches(part, document) for part in node.parts)
        return all(results) if node.op == "AND" else any(results)
    values = _resolve(document, node.field)
    if node.op in ("!=", "!~"):
        return all(_compare(v, node.op, node.literal) for v in values)
    return any(_compare(v, node.op, node.literal) for v in values)


def _fields_of(node) -> list[str]:
    if isinstance(node, BoolOp):
        return [name for part in node.parts for name in _fields_of(part)]
    return [node.field]


def check_field(path: str, documents: list[dict]) -> None:
    """Bitbucket rejects unknown fields. Every document of a collection has the same top-level
    keys, so the first one tells which roots exist (an empty collection cannot be checked)."""
    if documents and path.split(".")[0] not in documents[0]:
        raise QueryError(f"Invalid field name: {path.split('.')[0]!r}")


def filter_documents(documents: list[dict], q: str | None) -> list[dict]:
    if not q:
        return documents
    node = parse_query(q)
    for name in _fields_of(node):
        check_field(name, documents)
    return [doc for doc in documents if matches(node, doc)]


def sort_documents(documents: list[dict], sort: str | None) -> list[dict]:
    """One field, ``-`` for descending; a stable sort, so ties keep the default order and
    pages stay deterministic. Missing values sort first (ascending)."""
    if not sort:
        return documents
    descending = sort.startswith("-")
    path = sort.lstrip("-")
    if not _FIELD.fullmatch(path):
        raise QueryError(f"Invalid sort field: {sort!r}")
    check_field(path, documents)

    def key(doc: dict):
        value = _resolve(doc, path)[0]
        if value is _MISSING or value is None:
            return (0, "")
        if isinstance(value, str):
            moment = parse_datetime(value)
            if moment is not None:
                return (1, moment.timestamp())
            return (2, value)
        if isinstance(value, bool | int | float):
            return (1, float(value))
        return (3, str(value))

    return sorted(documents, key=key, reverse=descending)


# -- fields (partial responses) -----------------------------------------------------------------

ENVELOPE_KEYS = {"size", "page", "pagelen", "next", "previous", "values"}


def _include(source: Any, target: Any, segments: list[str]) -> Any:
    if not segments:
        return copy.deepcopy(source)
    if isinstance(source, list):
        target = target if isinstance(target, list) and len(target) == len(source) else None
        targets = target or [_MISSING] * len(source)
        return [_include(s, t, segments) for s, t in zip(source, targets, strict=True)]
    if not isinstance(source, dict):
        return target
    target = target if isinstance(target, dict) else {}
    head, rest = segments[0], segments[1:]
    keys = list(source) if head == "*" else [head] if head in source else []
    for name in keys:
        value = _include(source[name], target.get(name, _MISSING), rest)
        if value is not _MISSING:
            target[name] = value
    return target


def _exclude(target: Any, segments: list[str]) -> None:
    if isinstance(target, list):
        for item in target:
            _exclude(item, segments)
        return
    if not isinstance(target, dict):
        return
    head, rest = segments[0], segments[1:]
    for name in list(target) if head == "*" else [head] if head in target else []:
        if rest:
            _exclude(target[name], rest)
        else:
            del target[name]


def apply_fields(
    document: dict, fields: str | None, *, default_excluded: tuple[str, ...] = ()
) -> dict:
    """``fields``: ``-links`` removes, ``+reviewers`` adds (also fields left out by default),
    ``values.id,values.state`` keeps only those, ``*`` matches one level.

    Without a sign, the response starts empty and only the listed fields are kept — envelope
    fields such as ``next`` included, as on Bitbucket. On a paginated envelope, paths that do not
    name an envelope field are taken relative to each value (``+reviewers`` is read as
    ``+values.reviewers``), a tolerance of the sandbox.
    """
    is_envelope = "values" in document and isinstance(document.get("values"), list)
    items = [item.strip() for item in (fields or "").split(",") if item.strip()]
    inclusive = any(item[0] not in "+-" for item in items)
    if inclusive:
        result: Any = {}
    else:
        result = copy.deepcopy(document)
        for path in default_excluded:
            _exclude(result, path.split("."))
    for item in items:
        sign, path = (item[0], item[1:]) if item[0] in "+-" else ("+", item)
        segments = path.split(".")
        if any(not s for s in segments):
            raise QueryError(f"Invalid fields value: {item!r}")
        if is_envelope and segments[0] not in ENVELOPE_KEYS and segments[0] != "*":
            segments = ["values", *segments]
        if sign == "-":
            _exclude(result, segments)
        else:
            result = _include(document, result, segments)
    return result
