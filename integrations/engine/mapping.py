"""JMESPath expressions (validated once, compiled once) and catalog paths.

Expressions may call Lantern's own functions besides JMESPath's: they make any text a value
Backstage accepts where it goes (field mappings derive names, labels and tags from whatever a
repository holds), or drop a value that breaks a rule.

- ``to_entity_name(@)``: a valid entity name (``My Repo`` → ``My-Repo``, ``~jdoe`` → ``jdoe``,
  an over-long or non-Latin name → what fits plus a short hash of the whole); null for nothing.
- ``to_label_value(@)``: a valid label value, by the same rule (empty stays empty).
- ``to_tag(@)``: a valid tag (``Visual Basic`` → ``visual-basic``), null when nothing is left.
- ``to_tags(@)``: valid tags from a list (or one value), each once, in order.
- ``if_valid(@, 'rule')``: the value when it satisfies the rule, else null; rules
  ``entity_name``, ``label_value``, ``tag``, ``entity_ref``, ``string`` (non-empty).
"""

from functools import lru_cache
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import IncompleteExpressionError, JMESPathError
from jmespath.parser import ParsedResult

from catalog.validation import (
    VALUE_RULES,
    as_entity_name,
    as_label_value,
    as_tag,
    as_tags,
    value_error,
)

# The columns that store expressions and catalog paths hold this many characters.
MAX_EXPRESSION_LENGTH = 500


class ExpressionError(ValueError):
    """An invalid JMESPath expression. ``str()`` is the parser's message (the API and the
    config files show it); ``plain`` says it in words for a form, and ``position`` is the
    0-based index the parser stopped at, so a form can mark it in the expression."""

    def __init__(self, message: str, *, plain: str = "", position: int | None = None):
        super().__init__(message)
        self.plain = plain or message
        self.position = position


_SCALAR = {"types": ["string", "number", "boolean", "null"]}


class LanternFunctions(functions.Functions):
    """JMESPath's functions and Lantern's (see the module's docstring)."""

    @functions.signature(_SCALAR)
    def _func_to_entity_name(self, value):
        return as_entity_name(value)

    @functions.signature(_SCALAR)
    def _func_to_label_value(self, value):
        return as_label_value(value)

    @functions.signature(_SCALAR)
    def _func_to_tag(self, value):
        return as_tag(value)

    @functions.signature({"types": []})
    def _func_to_tags(self, values):
        return None if values is None else as_tags(values)

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_if_valid(self, value, rule):
        if rule not in VALUE_RULES:
            raise JMESPathError(
                f"if_valid(): unknown rule {rule!r}, use one of {', '.join(VALUE_RULES)}"
            )
        return value if value is not None and value_error(rule, value) is None else None


_OPTIONS = jmespath.Options(custom_functions=LanternFunctions())
FUNCTION_NAMES = frozenset(_OPTIONS.custom_functions.FUNCTION_TABLE)


def _unknown_functions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [] if node.get("type") != "function_expression" else [node.get("value")]
        found = [name for name in found if name not in FUNCTION_NAMES]
        return found + [
            name for child in node.get("children", []) for name in _unknown_functions(child)
        ]
    if isinstance(node, list):
        return [name for child in node for name in _unknown_functions(child)]
    return []


def compile_expression(expression: str) -> ParsedResult:
    if not isinstance(expression, str) or not expression.strip():
        raise ExpressionError("An expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"A JMESPath expression is at most {MAX_EXPRESSION_LENGTH} characters, "
            f"this one has {len(expression)}"
        )
    return _compile(expression)


@lru_cache(maxsize=1024)
def _compile(expression: str) -> ParsedResult:
    try:
        parsed = jmespath.compile(expression)
        unknown = _unknown_functions(parsed.parsed)
    except JMESPathError as exc:
        reason, position = _parse_error_reason(expression, exc)
        raise ExpressionError(
            f"Invalid JMESPath expression {expression!r}: {exc}",
            plain=_plain(expression, reason, position),
            position=position,
        ) from exc
    except RecursionError as exc:  # the parser recurses once per nested bracket
        raise ExpressionError(
            f"Invalid JMESPath expression {expression!r}: nested too deeply",
            plain=_plain(expression, "it is nested too deeply", None),
        ) from exc
    if unknown:
        reason = f"unknown function {unknown[0]}()"
        raise ExpressionError(
            f"Invalid JMESPath expression {expression!r}: {reason}",
            plain=_plain(expression, reason, None),
        )
    return parsed


_OPENERS = {"[?": "a filter", "[": "a bracket", "(": "a function call", "{": "a multi-select"}
_CLOSERS = {"]": "[", ")": "(", "}": "{"}
_QUOTES = {"'": "a raw string", '"': "a quoted name", "`": "a literal"}


def _plain(expression: str, reason: str, position: int | None) -> str:
    where = f" (at character {position + 1})" if position is not None else ""
    return f"`{expression}` is not a valid JMESPath expression: {reason}{where}"


def _parse_error_reason(expression: str, exc: JMESPathError) -> tuple[str, int | None]:
    """The parser's error as a short reason and the index it points at. The incomplete case
    points at the last character, the others at the offending token's first."""
    position = getattr(exc, "lex_position", None)
    if isinstance(exc, IncompleteExpressionError):
        unclosed = _unclosed(expression)
        reason = f"it ends inside {unclosed}" if unclosed else "it ends where more was expected"
        return reason, max(len(expression) - 1, 0)
    token = getattr(exc, "token_value", None)
    kind = getattr(exc, "token_type", "") or ""
    if kind.startswith("UNCLOSED"):
        return f"{_QUOTES.get(token[:1], 'a quote')} is never closed", position
    if kind == "EOF":
        return "it ends where more was expected", max(len(expression) - 1, 0)
    if token not in (None, ""):
        return f"unexpected “{token}”", position
    return "it cannot be parsed", position


def _unclosed(expression: str) -> str:
    """What the expression leaves open at its end: a filter, bracket, call or quote."""
    stack: list[str] = []
    quote = ""
    index = 0
    while index < len(expression):
        char = expression[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in _QUOTES:
            quote = char
        elif expression.startswith("[?", index):
            stack.append("[?")
            index += 1
        elif char in "[({":
            stack.append(char)
        elif char in _CLOSERS and stack and stack[-1].startswith(_CLOSERS[char]):
            stack.pop()
        index += 1
    if quote:
        return _QUOTES[quote]
    return _OPENERS[stack[-1]] if stack else ""


def search(expression: str, data: Any) -> Any:
    try:
        return compile_expression(expression).search(data, options=_OPTIONS)
    except JMESPathError as exc:  # runtime errors such as a function on the wrong type
        raise ExpressionError(f"JMESPath expression {expression!r} failed: {exc}") from exc


def catalog_path_parts(path: str) -> list[str]:
    """``metadata.annotations."bitbucket.org/repo-url"`` → [metadata, annotations, bitbucket…].

    Catalog paths are dotted; a quoted segment may contain dots.
    """
    return list(_path_parts(path))


@lru_cache(maxsize=1024)  # a few paths, split for every record a sync maps
def _path_parts(path: str) -> tuple[str, ...]:
    if len(path) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"A catalog path is at most {MAX_EXPRESSION_LENGTH} characters, this one has "
            f"{len(path)}"
        )
    parts: list[str] = []
    current = ""
    quoted = False
    for char in path.strip():
        if char == '"':
            quoted = not quoted
        elif char == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if quoted or any(not part for part in parts):
        reason = "a quote is never closed" if quoted else "it has an empty part"
        raise ExpressionError(
            f"Invalid catalog path {path!r}",
            plain=f"`{path}` is not a valid catalog path: {reason} (write dotted names such "
            'as metadata.description, quoting a name with dots: annotations."a.b/c")',
        )
    return tuple(parts)


_MISSING = object()


def get_path(document: dict, path: str) -> Any:
    current: Any = document
    for part in catalog_path_parts(path):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def set_path(document: dict, path: str, value: Any, *, only_if_empty: bool = False) -> bool:
    """Set a value at a catalog path, creating mappings on the way; True when it changed."""
    parts = catalog_path_parts(path)
    target = document
    for part in parts[:-1]:
        nested = target.get(part)
        if not isinstance(nested, dict):
            nested = {}
            target[part] = nested
        target = nested
    existing = target.get(parts[-1], _MISSING)
    if only_if_empty and existing not in (_MISSING, None, "", [], {}):
        return False
    if existing == value:
        return False
    target[parts[-1]] = value
    return True
