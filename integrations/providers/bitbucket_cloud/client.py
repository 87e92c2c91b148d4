"""Bitbucket Cloud REST 2.0 over the shared HTTP layer."""

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx

from integrations.providers import oauth
from integrations.providers.base import RequestStats
from integrations.providers.http import (
    ERROR_DETAIL_LIMIT,
    ConnectorNetwork,
    Credential,
    ProviderHttp,
    RequestBudget,
    RetryPolicy,
    outbound_client,
    redact,
)
from integrations.providers.oauth import BearerCredential, budget_key  # noqa: F401 (the provider imports it from here)
from integrations.providers.outbound import OutboundAddressError

DEFAULT_API_URL = "https://api.bitbucket.org/2.0"
DEFAULT_WEB_URL = "https://bitbucket.org"
REPOSITORIES_PAGELEN = 100
PULL_REQUESTS_PAGELEN = 50
COMMITS_PAGELEN = 100
PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")
HOURLY_LIMIT = 1000  # /2.0/repositories/* per credential and rolling hour (Atlassian's docs)
REQUEST_TIMEOUT = 20.0  # seconds; a connector's read_timeout replaces it
TOKEN_TRIES = 3


def retry_policy() -> RetryPolicy:
    """The retries of every Bitbucket Cloud client (tests replace it with tiny delays)."""
    return RetryPolicy()


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class BasicCredential(Credential):
    def __init__(self, username: str, password: str):
        self._password = password
        self._value = _basic(username, password)
        self.budget_key = budget_key(f"{username}:{password}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._value}

    def secrets(self) -> list[str]:
        return [self._password, self._value, self._value.removeprefix("Basic ")]


class OAuthCredential(oauth.OAuthCredential):
    """An OAuth consumer's token, from ``token_url`` with the consumer as Basic auth: a refresh
    token grant, or client credentials when there is none. A network failure or 5xx is tried
    again a few times."""

    def __init__(
        self,
        *,
        token_url: str,
        http_client: httpx.Client | None = None,
        network: ConnectorNetwork | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.token_url = token_url
        self.http_client = http_client
        self.network = network or ConnectorNetwork()

    def secrets(self) -> list[str]:
        """The consumer secret (sent as Basic to the token endpoint) and both tokens."""
        basic = _basic(self.client_id, self.client_secret)
        access = self.tokens.get("access_token") or ""
        refresh = self.tokens.get("refresh_token") or ""
        return [self.client_secret, basic, basic.removeprefix("Basic "), access, refresh]

    def _client(self) -> httpx.Client:
        """The token endpoint goes through the same proxy, outbound guard, timeouts and TLS rules
        as the API."""
        if self.http_client is None:
            self.http_client = outbound_client(network=self.network.with_defaults(REQUEST_TIMEOUT))
        return self.http_client

    def token_request(self, refresh_token: str | None) -> tuple[int, dict, str]:
        data = (
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
            if refresh_token
            else {"grant_type": "client_credentials"}
        )
        response = self._post(data)
        body = _json_object(response)
        for key in ("error_description", "error"):
            if body.get(key):
                body[key] = self._masked(body[key])
        return response.status_code, body, self._masked(response.text.strip())

    def _masked(self, value) -> str:
        return redact(str(value), self.secrets())[:ERROR_DETAIL_LIMIT]

    def _post(self, data: dict) -> httpx.Response:
        problem = ""
        for attempt in range(TOKEN_TRIES):
            if attempt:
                time.sleep(0.2 * attempt)
            try:
                response = self._client().post(
                    self.token_url, data=data, auth=(self.client_id, self.client_secret)
                )
            except OutboundAddressError:
                raise
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if response.status_code < 500:
                return response
            problem = f"HTTP {response.status_code}"
        self.fail(f"Could not reach the OAuth token endpoint ({problem}): reconnect the connector")


def _json_object(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def bbql_time(value: datetime) -> str:
    """BBQL datetimes are unquoted ISO-8601 with an offset (UTC)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def cloud_error_message(response: httpx.Response) -> str:
    """Bitbucket's ``{"type": "error", "error": {"message", "detail"}}`` as one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        detail = error.get("detail") or ""
        if isinstance(detail, dict):  # real 403s carry {required, granted} scopes here
            detail = "; ".join(f"{key}: {value}" for key, value in detail.items())
        parts = [str(error.get("message") or ""), str(detail)]
        return " — ".join(part for part in parts if part) or response.reason_phrase
    return response.reason_phrase


class BitbucketCloudClient:
    def __init__(
        self,
        *,
        base_url: str,
        credentials: list[Credential],
        stats: RequestStats,
        hourly_limit: int | None = HOURLY_LIMIT,
        retry: RetryPolicy | None = None,
        network: ConnectorNetwork | None = None,
    ):
        self.credentials = credentials
        self.http = ProviderHttp(
            base_url=base_url or DEFAULT_API_URL,
            credentials=credentials,
            stats=stats,
            budget=RequestBudget(hourly_limit),
            retry=retry or retry_policy(),
            network=(network or ConnectorNetwork()).with_defaults(REQUEST_TIMEOUT),
            error_message=cloud_error_message,
        )

    def close(self) -> None:
        self.http.close()
        for credential in self.credentials:
            client = getattr(credential, "http_client", None)
            if client is not None:
                client.close()

    def user(self) -> dict:
        return self.http.get_json("user")

    def workspace(self, workspace: str) -> dict:
        return self.http.get_json(f"workspaces/{workspace}")

    def projects_page(self, workspace: str, *, pagelen: int = 1) -> dict:
        return self.http.get_json(f"workspaces/{workspace}/projects", params={"pagelen": pagelen})

    def repositories_page(self, workspace: str, *, pagelen: int = 1) -> dict:
        return self.http.get_json(f"repositories/{workspace}", params={"pagelen": pagelen})

    def repository(self, workspace: str, slug: str) -> dict | None:
        return self.http.get_json(f"repositories/{workspace}/{slug}", not_found_ok=True)

    def repository_pages(
        self, workspace: str, *, q: str | None = None, sort: str | None = None
    ) -> Iterator[dict]:
        params = {"pagelen": REPOSITORIES_PAGELEN}
        if q:
            params["q"] = q
        if sort:
            params["sort"] = sort
        return self.http.iter_next_pages(f"repositories/{workspace}", params=params)

    def pull_request_pages(
        self, workspace: str, slug: str, *, q: str | None, pagelen: int
    ) -> Iterator[dict]:
        params: list[tuple[str, str | int]] = [("state", state) for state in PR_STATES]
        params += [("sort", "-updated_on"), ("pagelen", min(pagelen, PULL_REQUESTS_PAGELEN))]
        if q:
            params.append(("q", q))
        return self.http.iter_next_pages(
            f"repositories/{workspace}/{slug}/pullrequests", params=params
        )

    def commit_pages(self, workspace: str, slug: str, branch: str, *, pagelen: int):
        return self.http.iter_next_pages(
            f"repositories/{workspace}/{slug}/commits/{branch}",
            params={"pagelen": min(pagelen, COMMITS_PAGELEN)},
        )

    def file(self, workspace: str, slug: str, ref: str, path: str) -> bytes | None:
        response = self.http.request(
            "GET", f"repositories/{workspace}/{slug}/src/{ref}/{path}", not_found_ok=True
        )
        return None if response is None else response.content

    def hooks(self, workspace: str, slug: str) -> Iterator[dict]:
        for page in self.http.iter_next_pages(f"repositories/{workspace}/{slug}/hooks"):
            yield from page.get("values", [])

    def create_hook(self, workspace: str, slug: str, body: dict) -> dict:
        response = self.http.request("POST", f"repositories/{workspace}/{slug}/hooks", json=body)
        return response.json()
