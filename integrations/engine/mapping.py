"""JMESPath expressions (validated once, compiled once) and catalog paths."""

from functools import lru_cache
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

# The columns that store expressions and catalog paths hold this many characters.
MAX_EXPRESSION_LENGTH = 500


class ExpressionError(ValueError):
    """An invalid JMESPath expression; the message is the parser's."""


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
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ExpressionError(f"Invalid JMESPath expression {expression!r}: {exc}") from exc
    except RecursionError as exc:  # the parser recurses once per nested bracket
        raise ExpressionError(
            f"Invalid JMESPath expression {expression!r}: nested too deeply"
        ) from exc


def search(expression: str, data: Any) -> Any:
    try:
        return compile_expression(expression).search(data)
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
