"""The one HTTP layer of every provider.

A wrapped ``httpx.Client`` with timeouts, TLS always verified (a private CA is added, never a
bypass), the outbound-address guard, a client-side request budget per credential (rotating through
a pool of credentials when one is spent), retries with exponential backoff and full jitter on
429/5xx/timeouts/broken bodies honouring ``Retry-After``, and one paging generator per envelope
style. Errors come out as :class:`~integrations.providers.base.ProviderError` subclasses.
"""

import dataclasses
import email.utils
import functools
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, urljoin

import httpx

from integrations.providers.base import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderUnavailable,
    RequestStats,
)
from integrations.providers.budget import budget_store, current_window
from integrations.providers.outbound import (
    OutboundAddressError,
    RoutingTransport,
    outbound_check,
    proxied_target_check,
    proxy_for,
    proxy_label,
)

logger = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}
REDACTED = "[redacted]"
ERROR_DETAIL_LIMIT = 500  # characters of a provider's error text kept in a message
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 20.0
MAX_TIMEOUT = 300.0
NETWORK_CONFIG_KEYS = ("connect_timeout", "read_timeout")  # in Connector.config, seconds
PROXY_AUTH_REFUSED = (
    "The proxy {proxy} refused the request (HTTP 407 Proxy Authentication Required): check the "
    "user and password in the connector's proxy URL (or HTTPS_PROXY)"
)


class ProviderRateLimited(ProviderUnavailable):
    """Every credential's request budget is spent: the run stops cleanly and resumes later."""

    run_scoped = True


@dataclass
class RetryPolicy:
    max_tries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # Full jitter: uniform in [0, base * 2^attempt], capped.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret replaced by ``[redacted]``, also where it appears URL- or
    JSON-encoded (a form body, query or JSON body quoted back). Longest first, so a header value
    is masked whole rather than around the token inside it; values shorter than 4 characters
    are left alone, as masking them would mangle the text and hide nothing.

    For any text a provider sent that is about to become a message: a server may quote the
    request back, credentials and all, in its error."""
    forms = set()
    for secret in secrets:
        if secret and len(secret) >= 4:
            in_json = json.dumps(secret)[1:-1]
            forms |= {secret, quote(secret, safe=""), quote_plus(secret), in_json}
            forms.add(in_json.replace("/", "\\/"))  # JSON writers that escape the slash
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


class Credential:
    """One way of authenticating. ``budget_key`` identifies it without revealing it."""

    budget_key: str = "anonymous"

    def headers(self) -> dict[str, str]:
        return {}

    def refresh(self) -> bool:
        """Renew an expired credential (OAuth); True when a retry may succeed."""
        return False

    def secrets(self) -> list[str]:
        """The secret values this credential sends (tokens, passwords, the base64 of a Basic
        pair, the header values carrying them): what :func:`redact` masks in provider text."""
        return []


@dataclass
class StaticCredential(Credential):
    header_value: str
    budget_key: str = "static"

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.header_value}

    def secrets(self) -> list[str]:
        return [self.header_value, self.header_value.partition(" ")[2]]


class RequestBudget:
    """Requests per credential per clock hour, counted in the shared store
    (:mod:`~integrations.providers.budget`: every worker process and host counts together) and
    stopped short of the provider's limit by ``margin``.

    What the server announces is kept below too: its ``X-RateLimit-Limit`` replaces the
    configured limit for that credential (a smaller one wins; a scaled access token's larger one
    is used), and ``X-RateLimit-Remaining`` or ``X-RateLimit-NearLimit: true`` (under 20% left)
    raise the shared count to what the server says is spent, so requests made elsewhere with
    the same token are counted too."""

    NEAR_LIMIT_SPENT = 0.8

    def __init__(self, per_hour: int | None, *, margin: float = 0.95):
        self.per_hour = per_hour
        self.margin = margin
        self._announced: dict[str, int] = {}

    @property
    def limit(self) -> int | None:
        return int(self.per_hour * self.margin) if self.per_hour else None

    def limit_for(self, budget_key: str) -> int | None:
        announced = self._announced.get(budget_key)
        if announced:
            return max(1, int(announced * self.margin))
        return self.limit

    def take(self, budget_key: str) -> bool:
        limit = self.limit_for(budget_key)
        if limit is None:
            return True
        return budget_store().take(budget_key, current_window()) <= limit

    def observe(self, budget_key: str, headers: httpx.Headers) -> None:
        """Learn the credential's limit and spent requests from a response's headers."""
        announced = _header_int(headers, "X-RateLimit-Limit")
        if announced:
            self._announced[budget_key] = announced
        limit = announced or self.per_hour
        if not limit:
            return
        spent = None
        remaining = _header_int(headers, "X-RateLimit-Remaining")
        if remaining is not None:
            spent = max(0, limit - remaining)
        if headers.get("X-RateLimit-NearLimit", "").lower() == "true":
            spent = max(spent or 0, int(limit * self.NEAR_LIMIT_SPENT))
        if spent:
            budget_store().raise_to(budget_key, current_window(), spent)


def _header_int(headers: httpx.Headers, name: str) -> int | None:
    try:
        value = int(headers.get(name, ""))
    except ValueError:
        return None
    return value if value >= 0 else None


@functools.lru_cache(maxsize=64)
def ssl_context(ca_pem: str = "") -> ssl.SSLContext:
    """System trust plus an optional private CA. Verification is never switched off.

    Loading the system's trust store takes tens of milliseconds, so each distinct context is
    built once per process and shared (an SSLContext is safe to share between threads)."""
    context = ssl.create_default_context()
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    return context


@dataclass(frozen=True)
class ConnectorNetwork:
    """How one connector's requests leave the process: its own proxy (blank: the environment's
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``) and its timeouts in seconds (None: the
    provider's default, see :meth:`with_defaults`)."""

    proxy_url: str = ""
    connect_timeout: float | None = None
    read_timeout: float | None = None

    @classmethod
    def of(cls, connector) -> "ConnectorNetwork":
        """A stored connector's settings; a value the services would refuse counts as unset
        rather than stop a sync."""
        config = connector.config or {}
        return cls(
            proxy_url=getattr(connector, "proxy_url", "") or "",
            connect_timeout=_seconds(config.get("connect_timeout")),
            read_timeout=_seconds(config.get("read_timeout")),
        )

    def with_defaults(self, read_timeout: float = DEFAULT_READ_TIMEOUT) -> "ConnectorNetwork":
        """Unset timeouts filled in: ``read_timeout`` as given, the connect timeout
        :data:`DEFAULT_CONNECT_TIMEOUT` (never longer than the read timeout)."""
        read = self.read_timeout or read_timeout
        connect = self.connect_timeout or min(read, DEFAULT_CONNECT_TIMEOUT)
        return dataclasses.replace(self, connect_timeout=connect, read_timeout=read)

    @property
    def timeout(self) -> httpx.Timeout:
        network = self.with_defaults()
        return httpx.Timeout(network.read_timeout, connect=network.connect_timeout)

    def proxy_secrets(self) -> list[str]:
        """The proxy's password and user-info, as :func:`redact` masks them."""
        if not self.proxy_url:
            return []
        url = httpx.URL(self.proxy_url)
        return [url.password or "", url.userinfo.decode()]

    def route(self, url: str) -> str:
        """``direct`` or ``proxy host:port`` for a request to ``url`` (no credentials)."""
        proxy = proxy_for(url, self.proxy_url)
        return f"proxy {proxy_label(proxy)}" if proxy else "direct"


def _seconds(value: Any) -> float | None:
    return None if timeout_validate(value) else float(value)


def timeout_validate(value: Any) -> str | None:
    """Why ``value`` is not a usable timeout (seconds), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number of seconds"
    if not 0 < value <= MAX_TIMEOUT:
        return f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds"
    return None


def outbound_client(
    *, ca_pem: str = "", network: ConnectorNetwork | None = None, **options: Any
) -> httpx.Client:
    """The one way an ``httpx.Client`` to a provider is made (API and OAuth token endpoints):
    TLS verified with the system trust plus ``ca_pem``, the connector's timeouts, and every
    request routed direct or through its proxy with the outbound guard on its target."""
    network = network or ConnectorNetwork()
    return httpx.Client(
        timeout=network.timeout,
        transport=RoutingTransport(ssl_context(ca_pem), proxy_url=network.proxy_url),
        trust_env=False,  # proxies from the environment are read by the routing transport
        **options,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@dataclass
class ProviderHttp:
    base_url: str
    credentials: list[Credential] = field(default_factory=lambda: [Credential()])
    ca_pem: str = ""
    network: ConnectorNetwork = field(default_factory=ConnectorNetwork)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    budget: RequestBudget = field(default_factory=lambda: RequestBudget(None))
    stats: RequestStats = field(default_factory=RequestStats)
    error_message: Callable[[httpx.Response], str] | None = None
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._checked_hosts: set[str] = set()
        self._credential_index = 0

    @functools.cached_property
    def _client(self) -> httpx.Client:
        """Made on the first request: a provider built only to parse a webhook makes none."""
        return outbound_client(
            ca_pem=self.ca_pem,
            network=self.network,
            follow_redirects=True,
            max_redirects=5,
            headers={"Accept": "application/json", "User-Agent": "Lantern/0.1"},
        )

    def close(self) -> None:
        if "_client" in self.__dict__:
            self._client.close()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url.rstrip("/") + "/", path.lstrip("/"))

    # -- credentials and budget ---------------------------------------------------------------

    def _credential(self) -> Credential:
        """The current credential with budget left, rotating through the pool."""
        for offset in range(len(self.credentials)):
            index = (self._credential_index + offset) % len(self.credentials)
            credential = self.credentials[index]
            if self.budget.take(credential.budget_key):
                self._credential_index = index
                return credential
        raise ProviderRateLimited(
            "The request budget of every credential is spent for this hour; the sync continues "
            "on its next run. Add workspace access tokens to the connector to sync faster."
        )

    # -- requests ----------------------------------------------------------------------------

    @property
    def route(self) -> str:
        """How requests to the base URL leave: ``direct`` or ``proxy host:port``."""
        return self.network.route(self.base_url)

    def _proxy(self, url: str) -> str:
        return proxy_label(proxy_for(url, self.network.proxy_url))

    def _guard(self, url: str) -> None:
        """An early, clear refusal before any try (the transport checks every hop again)."""
        parsed = httpx.URL(url)
        if parsed.host in self._checked_hosts:
            return
        if self._proxy(url):
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            proxied_target_check(parsed.host, port)
        else:
            outbound_check(url)
        self._checked_hosts.add(parsed.host)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        files: Any = None,
        headers: dict | None = None,
        auth: bool = True,
        not_found_ok: bool = False,
    ) -> httpx.Response | None:
        """One logical request with retries. ``None`` for a 404 when ``not_found_ok``."""
        url = self.url(path)
        self._guard(url)
        refreshed = False
        last_problem = ""
        for attempt in range(self.retry.max_tries):
            credential = self._credential() if auth else Credential()
            request_headers = {**credential.headers(), **(headers or {})}
            self.stats.requests += 1
            try:
                response = self._client.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    files=files,
                    headers=request_headers,
                )
            except OutboundAddressError:
                raise
            except httpx.ProxyError as exc:
                proxy = self._proxy(url)
                if str(exc).startswith("407"):
                    raise ProviderError(PROXY_AUTH_REFUSED.format(proxy=proxy), status=407) from exc
                last_problem = f"proxy {proxy}: {redact(str(exc), self.network.proxy_secrets())}"
                self._backoff(attempt, None, last_problem, url)
                continue
            except httpx.ConnectError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise ProviderUnavailable(
                        f"TLS certificate of {httpx.URL(url).host} could not be verified ({exc}). "
                        "If the server uses a private CA, add its certificate (PEM) to the "
                        "connector."
                    ) from exc
                last_problem = type(exc).__name__
                self._backoff(attempt, None, last_problem, url)
                continue
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last_problem = f"{type(exc).__name__}"
                self._backoff(attempt, None, last_problem, url)
                continue
            if auth:
                self.budget.observe(credential.budget_key, response.headers)
            if response.status_code == 407:
                proxy = self._proxy(url)
                raise ProviderError(PROXY_AUTH_REFUSED.format(proxy=proxy), status=407)
            if response.status_code == 401 and auth and not refreshed and credential.refresh():
                refreshed = True
                continue
            if response.status_code in RETRY_STATUSES:
                last_problem = f"HTTP {response.status_code}"
                if response.status_code == 429 and len(self.credentials) > 1:
                    self._credential_index += 1  # let another credential carry on
                self._backoff(attempt, _retry_after(response), last_problem, url)
                continue
            if response.status_code == 404 and not_found_ok:
                return None
            if response.is_error:
                raise self._error(response)
            return response
        raise ProviderUnavailable(
            f"{self.base_url} kept failing ({last_problem}) after {self.retry.max_tries} tries"
        )

    def _backoff(self, attempt: int, retry_after: float | None, problem: str, url: str) -> None:
        if attempt + 1 >= self.retry.max_tries:
            return
        delay = self.retry.delay(attempt, retry_after)
        logger.info(
            "integrations.http.retry",
            extra={"url": url.split("?")[0], "problem": problem, "delay": round(delay, 2)},
        )
        self.sleep(delay)

    def _error(self, response: httpx.Response) -> ProviderError:
        """The provider's error as a message, with every credential's secrets redacted (before
        the text is shortened, so no part of a secret survives the cut)."""
        text = self.error_message(response) if self.error_message else response.text
        secrets = [secret for credential in self.credentials for secret in credential.secrets()]
        secrets += self.network.proxy_secrets()
        detail = redact(text, secrets)[:ERROR_DETAIL_LIMIT].strip()
        status = response.status_code
        if status == 401:
            return ProviderAuthError(f"Authentication failed: {detail}", status=status)
        if status == 403:
            return ProviderAuthError(f"Permission denied: {detail}", status=status)
        if status == 404:
            return ProviderNotFound(f"Not found: {detail}", status=status)
        return ProviderError(f"HTTP {status}: {detail}", status=status)

    def get_json(self, path: str, *, params: Any = None, not_found_ok: bool = False) -> Any:
        """GET and decode JSON; a broken body counts as a failed try and is retried."""
        for attempt in range(self.retry.max_tries):
            response = self.request("GET", path, params=params, not_found_ok=not_found_ok)
            if response is None:
                return None
            try:
                return response.json()
            except ValueError:
                self._backoff(attempt, None, "malformed JSON", self.url(path))
        raise ProviderUnavailable(f"{self.base_url} kept sending malformed JSON for {path}")

    # -- paging ------------------------------------------------------------------------------

    def _page(self, path: str, params: Any, problem: Callable[[Any], str | None]) -> dict:
        """One page, checked before it is handed on: a page ``problem`` finds fault with (a
        wrong shape, a continuation pointing back at a page already fetched) is a transient
        fault, so the same page is fetched again with backoff; only when that persists past
        ``retry.max_tries`` does paging stop, with a ProviderError."""
        for attempt in range(self.retry.max_tries):
            page = self.get_json(path, params=params)
            found = problem(page)
            if found is None:
                self.stats.pages += 1
                return page
            self._backoff(attempt, None, found, self.url(path))
        raise ProviderError(
            f"{found} from {self.url(path).split('?')[0]} after {self.retry.max_tries} tries"
        )

    @staticmethod
    def _next_page_problem(page: Any, fetched: set[str]) -> str | None:
        if not isinstance(page, dict) or not isinstance(page.get("values"), list):
            return "Unexpected page shape"
        next_url = page.get("next")
        if next_url is not None and not isinstance(next_url, str):
            return "Unexpected page shape (next)"
        if next_url in fetched:
            return f"Pagination loop: next {next_url} was already fetched"
        return None

    @staticmethod
    def _start_page_problem(page: Any, start: int) -> str | None:
        if not isinstance(page, dict) or not isinstance(page.get("values"), list):
            return "Unexpected page shape"
        if page.get("isLastPage", True) or page.get("nextPageStart") is None:
            return None
        try:
            next_start = int(page["nextPageStart"])
        except (TypeError, ValueError):
            return "Unexpected page shape (nextPageStart)"
        if next_start <= start:
            return f"Pagination loop: nextPageStart={next_start} at start={start}"
        return None

    def iter_next_pages(
        self, path: str, *, params: Any = None, max_pages: int = 100_000
    ) -> Iterator[dict]:
        """Bitbucket Cloud style: follow the opaque ``next`` URL until there is none."""
        fetched: set[str] = set()
        url, page_params = path, params
        for _ in range(max_pages):
            page = self._page(url, page_params, lambda p: self._next_page_problem(p, fetched))
            yield page
            next_url = page.get("next")
            if not next_url:
                return
            fetched.add(next_url)
            url, page_params = next_url, None
        raise ProviderError(f"More than {max_pages} pages from {self.url(path)}")

    def iter_start_pages(
        self, path: str, *, params: dict | None = None, limit: int = 100, max_pages: int = 100_000
    ) -> Iterator[dict]:
        """Bitbucket Data Center style: ``start``/``limit``, continue from ``nextPageStart``,
        which must move forward (pages need not be contiguous, but never go back)."""
        start = 0
        for _ in range(max_pages):
            page = self._page(
                path,
                {**(params or {}), "start": start, "limit": limit},
                lambda p, start=start: self._start_page_problem(p, start),
            )
            yield page
            if page.get("isLastPage", True) or page.get("nextPageStart") is None:
                return
            start = int(page["nextPageStart"])
        raise ProviderError(f"More than {max_pages} pages from {self.url(path)}")
