"""Bitbucket Data Center REST 1.0 over the shared HTTP layer, HTTPS with an optional private CA.

Paths are relative to ``{instance}/rest/api/1.0``; lists are paged with ``start``/``limit`` and
continued from ``nextPageStart`` (:meth:`ProviderHttp.iter_start_pages`), never by adding the
limit: an instance caps the limit (and says so in the page) and pages need not be contiguous.
"""

from collections.abc import Iterator
from urllib.parse import quote

import httpx

from integrations.providers.base import ProviderUnavailable, RequestStats
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
from integrations.providers.oauth import BearerCredential, OAuthCredential
from integrations.providers.outbound import OutboundAddressError

API_PATH = "/rest/api/1.0"
OAUTH_PATH = "/rest/oauth2/latest"
REPOSITORIES_LIMIT = 100
PULL_REQUESTS_LIMIT = 100
COMMITS_LIMIT = 100
REQUEST_TIMEOUT = 20.0  # seconds; a connector's read_timeout replaces it
# The token endpoint's form fields that are secrets (masked in its error answers).
SECRET_FORM_FIELDS = ("client_secret", "refresh_token", "code", "code_verifier")


def retry_policy() -> RetryPolicy:
    """The retries of every Data Center client (tests replace it with tiny delays)."""
    return RetryPolicy()


def dc_error_message(response: httpx.Response) -> str:
    """Data Center's ``{"errors": [{"message", "exceptionName"}]}`` as one line."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        messages = [
            str(error["message"])
            for error in errors
            if isinstance(error, dict) and error.get("message")
        ]
        if messages:
            return "; ".join(messages)
    return response.reason_phrase


# Data Center's HTTP access tokens are sent as Bearer tokens, like Cloud's.
PersonalAccessToken = BearerCredential


class TokenEndpoint:
    """``/rest/oauth2/latest/token`` of an instance, through the outbound guard and the same TLS
    rules (private CA) as the API. Never retried: an authorization code is single-use and a
    refresh token is rotated, so a blind retry would only turn a lost answer into a refusal.

    The answer's ``error`` and ``error_description`` come back with the form's secrets masked,
    so every caller may quote them."""

    def __init__(
        self, *, instance_url: str, ca_pem: str = "", network: ConnectorNetwork | None = None
    ):
        self.url = instance_url.rstrip("/") + OAUTH_PATH + "/token"
        self.ca_pem = ca_pem
        self.network = network or ConnectorNetwork()

    def post(self, form: dict[str, str]) -> tuple[int, dict]:
        network = self.network.with_defaults(REQUEST_TIMEOUT)
        client = outbound_client(ca_pem=self.ca_pem, network=network)
        try:
            response = client.post(self.url, data=form, headers={"Accept": "application/json"})
        except OutboundAddressError:
            raise
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ProviderUnavailable(
                    f"TLS certificate of {httpx.URL(self.url).host} could not be verified "
                    f"({exc}). If the server uses a private CA, add its certificate (PEM) to the "
                    "connector."
                ) from exc
            raise ProviderUnavailable(
                f"Could not reach the OAuth token endpoint: {type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                f"Could not reach the OAuth token endpoint: {type(exc).__name__}"
            ) from exc
        finally:
            client.close()
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text.strip() or response.reason_phrase}
        if not isinstance(body, dict):
            return response.status_code, {}
        secrets = [form.get(key, "") for key in SECRET_FORM_FIELDS]
        for key in ("error", "error_description"):
            if body.get(key):
                body[key] = redact(str(body[key]), secrets)[:ERROR_DETAIL_LIMIT]
        return response.status_code, body


class ApplicationLinkCredential(OAuthCredential):
    """An OAuth 2.0 access token from an application link, renewed with its refresh token at
    the instance's :class:`TokenEndpoint` (the client in the form, never retried)."""

    def __init__(self, *, endpoint: TokenEndpoint, **kwargs):
        super().__init__(**kwargs)
        self.endpoint = endpoint

    def token_request(self, refresh_token: str | None) -> tuple[int, dict, str]:
        if not refresh_token:
            self.fail(
                "The application link is not authorised yet: complete the OAuth authorisation "
                "of the connector in Bitbucket Data Center"
            )
        status, body = self.endpoint.post(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
        )
        return status, body, f"HTTP {status}"


class BitbucketDataCenterClient:
    def __init__(
        self,
        *,
        instance_url: str,
        credentials: list[Credential],
        stats: RequestStats,
        ca_pem: str = "",
        retry: RetryPolicy | None = None,
        page_limit: int = REPOSITORIES_LIMIT,
        network: ConnectorNetwork | None = None,
    ):
        self.instance_url = instance_url.rstrip("/")
        self.page_limit = page_limit
        self.http = ProviderHttp(
            base_url=self.instance_url + API_PATH,
            credentials=credentials,
            ca_pem=ca_pem,
            network=(network or ConnectorNetwork()).with_defaults(REQUEST_TIMEOUT),
            stats=stats,
            budget=RequestBudget(None),  # Data Center's rate limit is opt-in, per instance
            retry=retry or retry_policy(),
            error_message=dc_error_message,
        )

    def close(self) -> None:
        self.http.close()

    # -- instance and projects ----------------------------------------------------------------

    def application_properties(self) -> dict:
        """No authentication needed: what the probe reads first (version, build, name)."""
        response = self.http.request("GET", "application-properties", auth=False)
        try:
            body = response.json()
        except ValueError:
            body = None
        return body if isinstance(body, dict) else {}

    def repositories_page(self, *, limit: int = 1) -> dict:
        return self.http.get_json("repos", params={"limit": limit})

    def project(self, key: str) -> dict | None:
        return self.http.get_json(f"projects/{quote(key)}", not_found_ok=True)

    # -- repositories --------------------------------------------------------------------------

    @staticmethod
    def _repo(key: str, slug: str) -> str:
        return f"projects/{quote(key)}/repos/{quote(slug)}"

    def repository_pages(self, project_key: str | None = None) -> Iterator[dict]:
        """Every repository the credential may read, or those of one project."""
        path = f"projects/{quote(project_key)}/repos" if project_key else "repos"
        return self.http.iter_start_pages(path, limit=self.page_limit)

    def repository(self, key: str, slug: str) -> dict | None:
        return self.http.get_json(self._repo(key, slug), not_found_ok=True)

    def default_branch(self, key: str, slug: str) -> str | None:
        """The default branch's name; None for an empty repository (a 404)."""
        ref = self.http.get_json(f"{self._repo(key, slug)}/default-branch", not_found_ok=True)
        if not isinstance(ref, dict):
            return None
        ref_id = ref.get("id") or ""
        return ref.get("displayId") or ref_id.removeprefix("refs/heads/") or None

    def default_branch_tip(self, key: str, slug: str) -> tuple[str | None, str | None]:
        """The default branch's name and its newest commit id, in one request
        (``/branches/default``, which carries ``latestCommit``; ``/default-branch`` does not).

        ``(None, None)`` for an empty repository (a 204). A 404 means the repository is gone or
        its configured default branch was never pushed; the configured name is then read from
        ``/default-branch`` (None when that 404s too), with no tip."""
        path = f"{self._repo(key, slug)}/branches/default"
        response = self.http.request("GET", path, not_found_ok=True)
        if response is None:
            return self.default_branch(key, slug), None
        if response.status_code == 204:
            return None, None
        try:
            ref = response.json()
        except ValueError:  # a broken body: read again, with the client's retries
            ref = self.http.get_json(path, not_found_ok=True)
        if not isinstance(ref, dict):
            return None, None
        ref_id = ref.get("id") or ""
        name = ref.get("displayId") or ref_id.removeprefix("refs/heads/") or None
        tip = ref.get("latestCommit") or ref.get("latestChangeset") or None
        return name, tip

    def commit(self, key: str, slug: str, commit_id: str) -> dict | None:
        """One commit (its dates); None when it (or the repository) is gone."""
        return self.http.get_json(
            f"{self._repo(key, slug)}/commits/{quote(commit_id)}", not_found_ok=True
        )

    # -- pull requests, commits, files ---------------------------------------------------------

    def pull_request_pages(self, key: str, slug: str, *, limit: int) -> Iterator[dict]:
        """Every state, most recently updated first."""
        return self.http.iter_start_pages(
            f"{self._repo(key, slug)}/pull-requests",
            params={"state": "ALL", "order": "NEWEST"},
            limit=max(1, min(limit, PULL_REQUESTS_LIMIT)),
        )

    def commit_pages(self, key: str, slug: str, branch: str, *, limit: int) -> Iterator[dict]:
        return self.http.iter_start_pages(
            f"{self._repo(key, slug)}/commits",
            params={"until": f"refs/heads/{branch}"},
            limit=max(1, min(limit, COMMITS_LIMIT)),
        )

    def file(self, key: str, slug: str, ref: str, path: str) -> bytes | None:
        response = self.http.request(
            "GET",
            f"{self._repo(key, slug)}/raw/{quote(path)}",
            params={"at": ref},
            not_found_ok=True,
        )
        return None if response is None else response.content
