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
from jmespath.exceptions import JMESPathError
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
    """An invalid JMESPath expression; the message is the parser's."""


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
        raise ExpressionError(f"Invalid JMESPath expression {expression!r}: {exc}") from exc
    except RecursionError as exc:  # the parser recurses once per nested bracket
        raise ExpressionError(
            f"Invalid JMESPath expression {expression!r}: nested too deeply"
        ) from exc
    if unknown:
        raise ExpressionError(
            f"Invalid JMESPath expression {expression!r}: unknown function {unknown[0]}()"
        )
    return parsed


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
        raise ExpressionError(f"Invalid catalog path {path!r}")
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
