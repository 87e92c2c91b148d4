"""Requests, responses and the routing table shared by the sandbox servers (stdlib only)."""

import email.parser
import email.policy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from sandbox.cloud.credentials import Principal
from sandbox.datacenter.credentials import DcPrincipal


class ApiError(Exception):
    """An error response in Bitbucket's shape: ``{"type": "error", "error": {...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: str | None = None,
        *,
        data: dict | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.data = data
        self.headers = headers or {}

    def document(self) -> dict:
        error: dict[str, Any] = {"message": self.message}
        if self.detail:
            error["detail"] = self.detail
        if self.data:
            error["data"] = self.data
        return {"type": "error", "error": error}


@dataclass
class FormField:
    name: str
    value: bytes
    filename: str | None = None


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: list[tuple[str, str]]
    headers: Any  # an email.message.Message: case-insensitive .get()
    body: bytes
    client: str
    host: str
    params: dict[str, str] = field(default_factory=dict)
    principal: Principal | DcPrincipal | None = None
    route: "Route | None" = None

    @property
    def base_url(self) -> str:
        """Absolute URLs (``next``, ``links``) are built from the Host the client used."""
        return f"http://{self.host}"

    def arg(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return default

    def args(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Bad request", "The body is not valid JSON") from None

    def form(self) -> list[FormField]:
        """``application/x-www-form-urlencoded`` or ``multipart/form-data`` fields, in order."""
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            head = f"Content-Type: {content_type}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                head + self.body
            )
            fields = []
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name is None:
                    continue
                payload = part.get_payload(decode=True) or b""
                fields.append(FormField(str(name), payload, part.get_filename()))
            return fields
        # latin-1 maps percent-decoded bytes one to one, so file contents keep their bytes.
        pairs = parse_qsl(self.body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
        return [
            FormField(name.encode("latin-1").decode("utf-8", "replace"), value.encode("latin-1"))
            for name, value in pairs
        ]

    def url(self, path: str, query: list[tuple[str, str]] | None = None) -> str:
        """An absolute URL on this server; the query keeps its order (opaque, stable links)."""
        url = self.base_url + quote(path, safe="/:@")
        if query:
            url += "?" + urlencode(query, quote_via=quote, safe="")
        return url


@dataclass
class PageInfo:
    """What fault injection needs to know about a paginated response."""

    self_url: str  # this page's own URL, as the previous page's ``next`` spelled it
    retry_url: str  # the same page again, spelled differently (after an injected empty page)
    continuation: bool  # reached by following a ``next`` link


@dataclass
class Response:
    status: int = 200
    document: Any = None  # JSON, encoded after ``fields`` and faults are applied
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    default_excluded: tuple[str, ...] = ()
    page: PageInfo | None = None
    drop: bool = False  # close the connection without answering (fault injection)

    @classmethod
    def json(cls, document: Any, status: int = 200, **kwargs) -> "Response":
        return cls(status=status, document=document, **kwargs)

    @classmethod
    def error(cls, error: ApiError) -> "Response":
        return cls(status=error.status, document=error.document(), headers=dict(error.headers))

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> "Response":
        return cls(status=status, body=text.encode(), content_type=content_type)

    def encode(self) -> bytes:
        if self.document is not None:
            return json.dumps(self.document).encode()
        return self.body


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """One endpoint. ``scope``: the OAuth scope it needs; ``public``: anonymous callers may use it
    (on public repositories); ``auth``: False for the OAuth and control endpoints."""

    method: str
    template: str
    handler: Handler
    scope: str | None = None
    public: bool = False
    auth: bool = True
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def group(match: re.Match) -> str:
            name, _, kind = match.group(1).partition(":")
            return f"(?P<{name}>.*)" if kind == "path" else f"(?P<{name}>[^/]+)"

        regex = re.sub(r"\{([a-z_]+(?::path)?)\}", group, self.template)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"


class Router:
    def __init__(self, routes: list[Route]):
        self.routes = routes

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = []
        for route in self.routes:
            found = route.pattern.match(path)
            if found:
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, found.groupdict()
                allowed.append(route.method)
        if allowed:
            raise ApiError(
                405,
                "Method not allowed",
                f"{method} is not allowed here",
                headers={"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise ApiError(404, "Resource not found", f"No resource at {path}")
