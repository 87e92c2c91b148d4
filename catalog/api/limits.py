"""What one catalog API query may ask for, checked before it becomes SQL.

Each filter condition is a semi-join on the search table; PostgreSQL plans a few dozen ANDed ones
in milliseconds but a few hundred in minutes, so the number of conditions is capped, as is the
nesting of predicates (each level is a recursion in :func:`catalog.query.predicate_q`). A key or
value longer than a search row's can never match, so it is refused rather than looked up.
"""

from collections.abc import Sequence
from typing import Any

from catalog.query import parse_filter_params
from catalog.search import MAX_KEY_LENGTH, MAX_VALUE_LENGTH
from portal.api import InputError

MAX_QUERY_CONDITIONS = 50
MAX_PREDICATE_DEPTH = 16
MAX_FACETS = 50
_LOGICAL = ("$all", "$any", "$not")


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else f"{text[:40]}…")


def _check_key(key: str, where: str) -> None:
    if len(key) > MAX_KEY_LENGTH:
        raise InputError(f"{where} key {_short(key)} is longer than {MAX_KEY_LENGTH} characters")


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
        raise InputError(
            f"{where} value {_short(value)} is longer than {MAX_VALUE_LENGTH} characters"
        )


def _predicate_conditions(predicate: Any) -> int:
    """Leaf conditions of a predicate, refusing deep nesting and over-long keys and values
    (iteratively: a deep predicate must not recurse here either). Its shape is
    :func:`catalog.query.predicate_q`'s to check."""
    count = 0
    stack = [(predicate, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list):
            stack.extend((item, depth) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _LOGICAL:
                if depth >= MAX_PREDICATE_DEPTH:
                    raise InputError(
                        f"The filter predicate nests $all, $any and $not deeper than "
                        f"{MAX_PREDICATE_DEPTH} levels"
                    )
                stack.append((value, depth + 1))
                continue
            count += 1
            _check_key(str(key), "Filter")
            operands = value.values() if isinstance(value, dict) else [value]
            for operand in operands:
                for item in operand if isinstance(operand, list) else [operand]:
                    _check_value(item, "Filter")
    return count


def query_limits_check(
    *, filters: Sequence[str] = (), predicate: Any = None, full_text_term: str = ""
) -> None:
    """An InputError (400) when a query asks for more than the catalog answers quickly."""
    conditions = 0
    for all_of in parse_filter_params(list(filters)):
        for key, values in all_of.items():
            _check_key(key, "Filter")
            for value in values or []:
                _check_value(value, "Filter")
            conditions += 1
    if predicate is not None:
        conditions += _predicate_conditions(predicate)
    _check_value(full_text_term, "Full-text")
    if conditions > MAX_QUERY_CONDITIONS:
        raise InputError(
            f"The query has {conditions} filter conditions; at most {MAX_QUERY_CONDITIONS} are "
            "allowed"
        )


def facets_check(facets: list[str]) -> None:
    if len(facets) > MAX_FACETS:
        raise InputError(f"At most {MAX_FACETS} facets per request, got {len(facets)}")
    for facet in facets:
        _check_key(facet, "Facet")
