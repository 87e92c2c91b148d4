"""The API's request parser: DRF's JSON parser with the limits of an untrusted body.

Its own module, without ``rest_framework.views``: DRF imports the parser while it is still
building ``APIView``.
"""

from rest_framework import exceptions, parsers

# Deeper JSON is refused before any view sees it: nothing Lantern stores or queries nests this far,
# and the recursive code that walks documents (search rows, predicates) stays far from Python's
# recursion limit.
MAX_JSON_DEPTH = 64


def json_input_error(value) -> str | None:
    """Why a parsed JSON value is refused (nested deeper than :data:`MAX_JSON_DEPTH`, or a NUL
    character, which PostgreSQL cannot store), or None. Iterative, so any depth is safe."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
            items = current.items() if isinstance(current, dict) else enumerate(current)
            for key, item in items:
                if isinstance(key, str) and "\x00" in key:
                    return "JSON strings must not contain NUL characters (\\u0000)"
                stack.append((item, depth + 1))
        elif isinstance(current, str) and "\x00" in current:
            return "JSON strings must not contain NUL characters (\\u0000)"
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, bounded: the body size by ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (DRF reads
    ``request.body``, which enforces it), nesting by :data:`MAX_JSON_DEPTH` and no NUL
    characters. Deep nesting is a 400, never the decoder's RecursionError."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels"
            ) from exc
        if error := json_input_error(data):
            raise exceptions.ParseError(f"JSON parse error - {error}")
        return data
