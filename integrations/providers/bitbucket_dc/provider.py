"""The Bitbucket Data Center provider: a self-hosted instance's (9.x, 10.x) repositories, pull
requests and commits, over HTTPS only, trusting a private CA when the connector carries one.

Behind ``BITBUCKET_DC_ENABLED``: while it is off, :meth:`is_enabled` says so and the services
refuse to create connectors and integrations for it.
"""

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from django.conf import settings

from integrations.providers.base import (
    AuthKindSpec,
    CommitRecord,
    ProbeResult,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    PullRequestRecord,
    RepoRecord,
    RepositoryLocation,
    repository_scoped,
    url_segments_under,
)
from integrations.providers.bitbucket_dc import records
from integrations.providers.bitbucket_dc.client import (
    OAUTH_PATH,
    REPOSITORIES_LIMIT,
    ApplicationLinkCredential,
    BitbucketDataCenterClient,
    PersonalAccessToken,
    TokenEndpoint,
)
from integrations.providers.bitbucket_dc.tls import CertificateError, ca_pem_validate
from integrations.providers.bitbucket_dc.webhooks import EVENTS as WEBHOOK_EVENTS
from integrations.providers.bitbucket_shared import (
    BITBUCKET_FIELD_MAPPINGS,
    PROJECTS,
    REPOSITORY_PATTERN,
)
from integrations.providers.http import ConnectorNetwork, RetryPolicy
from integrations.providers.oauth import token_fields

SUPPORTED_MAJORS = (9, 10)
NOT_ENABLED = "Bitbucket Data Center is not enabled: set BITBUCKET_DC_ENABLED=true"
HTTPS_ONLY = (
    "The instance URL must start with https://: Lantern talks to Bitbucket Data Center over TLS "
    "only (add the private CA's certificate to the connector if the instance uses one)"
)
PROJECT_KEY_RE = re.compile(r"^~?[A-Za-z0-9_][A-Za-z0-9_-]*$")
OAUTH_SCOPES = "PUBLIC_REPOS REPO_READ"
PROPERTY_KEYS = (
    "id",
    "name",
    "slug",
    "full_name",
    "url",
    "project_key",
    "project_name",
    "default_branch",
    "visibility",
    "public",
    "state",
    "archived",
    "clone_http",
    "clone_ssh",
    "description",
)


def _not_permitted(error: ProviderError) -> bool:
    """Data Center answers 401 for a missing permission as for a bad credential; only the
    message tells them apart."""
    return "not permitted" in error.message.lower()


def version_check(version: Any) -> str | None:
    """Why this version is refused, or None when it is supported."""
    match = re.match(r"^\s*(\d+)\.", str(version or ""))
    if match is None:
        return (
            f"Could not read a Bitbucket Data Center version from the instance ({version!r}): "
            "is the URL the instance's base URL?"
        )
    if int(match.group(1)) not in SUPPORTED_MAJORS:
        return (
            f"Bitbucket Data Center {version} is not supported: Lantern needs version 9.x or "
            "10.x. Upgrade the instance."
        )
    return None


def _personal_access_token(provider: "BitbucketDataCenterProvider") -> list:
    return [PersonalAccessToken(provider.connector.secrets.get("token", ""))]


def _application_link(provider: "BitbucketDataCenterProvider") -> list:
    endpoint = provider.token_endpoint(provider.connector)
    return [ApplicationLinkCredential.for_provider(provider, endpoint=endpoint)]


PERSONAL_ACCESS_TOKEN = AuthKindSpec(
    key="personal_access_token",
    label="Personal access token",
    secret_fields=("token",),
    required=(("token",),),
    build_credential=_personal_access_token,
)
OAUTH_APPLICATION_LINK = AuthKindSpec(
    key="oauth_application_link",
    label="OAuth 2.0 application link",
    public_fields=("client_id",),
    secret_fields=("client_secret", "refresh_token", "access_token"),
    required=(("client_id",), ("client_secret",)),
    field_labels={"client_id": "Client id"},
    build_credential=_application_link,
    browser_authorization=True,
)


class BitbucketDataCenterProvider(Provider):
    key = "bitbucket_dc"
    name = "Bitbucket Data Center"
    properties_key = "BitbucketDataCenter"
    auth_kinds = (PERSONAL_ACCESS_TOKEN, OAUTH_APPLICATION_LINK)
    target_fields = (PROJECTS, REPOSITORY_PATTERN)
    catalog_file = "catalog-info.yaml"
    default_field_mappings = BITBUCKET_FIELD_MAPPINGS
    webhook_events = WEBHOOK_EVENTS

    def __init__(
        self,
        *,
        connector,
        integration=None,
        client: BitbucketDataCenterClient | None = None,
        retry: RetryPolicy | None = None,
        page_limit: int = REPOSITORIES_LIMIT,
        **callbacks,
    ):
        super().__init__(connector=connector, integration=integration, **callbacks)
        self.instance_url = (connector.base_url or "").rstrip("/")
        self.client = client or BitbucketDataCenterClient(
            instance_url=self.instance_url,
            credentials=self.credentials(),
            stats=self.stats,
            ca_pem=connector.ca_pem or "",
            retry=retry,
            page_limit=page_limit,
            network=ConnectorNetwork.of(connector),
        )

    def reads_in_background(self) -> bool:
        # A refreshed OAuth token is stored in the database.
        return self.connector.auth_kind != OAUTH_APPLICATION_LINK.key

    # -- set-up ------------------------------------------------------------------------------

    @classmethod
    def is_enabled(cls) -> tuple[bool, str]:
        if settings.BITBUCKET_DC_ENABLED:
            return True, ""
        return False, NOT_ENABLED

    @classmethod
    def validate_connector(
        cls,
        *,
        auth_kind: str,
        base_url: str | None = None,
        secrets=None,
        config=None,
        ca_pem: str | None = None,
    ) -> dict[str, str]:
        """The instance URL is required and ``https://`` only (never plain http, allowlisted or
        not); a private CA is accepted only as valid CA certificates (at most 64 KiB, CA
        constraint, not expired)."""
        if base_url is not None and not base_url.strip():
            errors = {"base_url": "the instance URL is required (https://bitbucket.example.com)"}
            base_url = None
        elif base_url is not None and not base_url.lower().startswith("https://"):
            errors = {"base_url": HTTPS_ONLY}
            base_url = None
        else:
            errors = {}
        errors = {
            **super().validate_connector(
                auth_kind=auth_kind, base_url=base_url, secrets=secrets, config=config
            ),
            **errors,
        }
        if ca_pem:
            try:
                ca_pem_validate(ca_pem)
            except CertificateError as exc:
                errors["ca_pem"] = str(exc)
        return errors

    @classmethod
    def validate_target(cls, target: dict) -> dict[str, str]:
        errors = super().validate_target(target)
        projects = target.get("projects", [])
        if not isinstance(projects, list) or not all(
            isinstance(key, str) and PROJECT_KEY_RE.match(key) for key in projects
        ):
            errors["projects"] = "must be a list of project keys (empty: every project)"
        pattern = target.get("repository_pattern")
        if pattern:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                errors["repository_pattern"] = f"invalid regular expression: {exc}"
        return errors

    @property
    def target(self) -> dict:
        return (self.integration.target if self.integration else {}) or {}

    @property
    def projects(self) -> list[str]:
        return sorted({key.upper() for key in self.target.get("projects") or []})

    def _https_check(self) -> None:
        if not self.instance_url.lower().startswith("https://"):
            raise ProviderError(HTTPS_ONLY)

    # -- OAuth 2.0 application links ------------------------------------------------------------

    @classmethod
    def oauth_redirect_uri(cls, connector) -> str:
        """What the admin enters as the application link's redirect URL in Data Center."""
        base = settings.LANTERN_PUBLIC_URL.rstrip("/")
        return f"{base}/org/bitbucket-dc/{connector.pk}/callback"

    @staticmethod
    def token_endpoint(connector) -> TokenEndpoint:
        return TokenEndpoint(
            instance_url=connector.base_url or "",
            ca_pem=connector.ca_pem or "",
            network=ConnectorNetwork.of(connector),
        )

    @classmethod
    def oauth_authorize_url(cls, connector, *, state: str, code_challenge: str) -> str:
        """The instance's consent page for the application link (``client_id`` in the
        connector's config), asking for read access to repositories."""
        query = urlencode(
            {
                "client_id": (connector.config or {}).get("client_id", ""),
                "redirect_uri": cls.oauth_redirect_uri(connector),
                "response_type": "code",
                "scope": OAUTH_SCOPES,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        base = (connector.base_url or "").rstrip("/")
        return f"{base}{OAUTH_PATH}/authorize?{query}"

    @classmethod
    def oauth_complete(cls, connector, *, code: str, verifier: str = "") -> dict:
        """Exchange the authorization code at the instance's token endpoint (never retried: a
        code is single-use); the caller stores the tokens (``services.connector_oauth_complete``).
        """
        redirect_uri = cls.oauth_redirect_uri(connector)
        status, body = cls.token_endpoint(connector).post(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": (connector.config or {}).get("client_id", ""),
                "client_secret": connector.secrets.get("client_secret", ""),
                "code_verifier": verifier,
            }
        )
        if status == 200 and body.get("access_token"):
            return token_fields(body)
        error = body.get("error") or f"HTTP {status}"
        if error == "invalid_grant":
            said = body.get("error_description") or ""
            quoted = f" ({said})" if said else ""
            mismatch = (
                "a redirect URL mismatch: the application link's redirect URL must be exactly "
                f"{redirect_uri}"
            )
            replay = "the code expired or was already used: click Connect again"
            first, then = (mismatch, replay) if "redirect" in said.lower() else (replay, mismatch)
            raise ProviderAuthError(
                f"Bitbucket Data Center refused the authorization code (invalid_grant){quoted}. "
                f"The usual cause is {first}. Otherwise {then}.",
                status=status,
            )
        if error == "invalid_client":
            raise ProviderAuthError(
                "Bitbucket Data Center refused the client id or secret (invalid_client): copy "
                "both again from the application link.",
                status=status,
            )
        reason = body.get("error_description") or error
        raise ProviderAuthError(f"The OAuth authorisation failed ({reason})", status=status)

    # -- probe ---------------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        """HTTPS, a supported version, the credential, then each chosen project; each failure
        with its own message."""
        details: dict = {"url": self.instance_url}
        if not self.instance_url.lower().startswith("https://"):
            return ProbeResult(False, HTTPS_ONLY, details)
        # Once the credential is accepted, a project missing or unreadable is the target's
        # problem, not the connector's.
        accepted = False
        try:
            properties = self.client.application_properties()
            version = properties.get("version")
            details.update(version=version, display_name=properties.get("displayName"))
            refused = version_check(version)
            if refused:
                return ProbeResult(False, refused, details)
            page = self.client.repositories_page(limit=1)
            accepted = True
            details["repositories_visible"] = bool(page.get("values"))
            for key in self.projects:
                refused = self._project_check(key)
                if refused:
                    return ProbeResult(False, refused, details, target_error=True)
        except ProviderAuthError as exc:
            if accepted:
                return ProbeResult(False, exc.message, details, target_error=True)
            if exc.status == 401:
                return ProbeResult(False, self._refused_message(exc), details)
            return ProbeResult(False, exc.message, details)
        except ProviderNotFound:
            return ProbeResult(
                False,
                f"{self.instance_url} does not answer like Bitbucket Data Center "
                "(no /rest/api/1.0/application-properties): check the instance URL",
                details,
            )
        except ProviderError as exc:
            return ProbeResult(False, exc.message, details)
        message = f"Connected to Bitbucket Data Center {version}"
        if not details["repositories_visible"]:
            message += (
                " — but the credential sees no repository yet: give it PROJECT_READ on the "
                "projects to import"
            )
        return ProbeResult(True, message, details)

    def _project_check(self, key: str) -> str | None:
        try:
            if self.client.project(key) is None:
                return f"No project {key} on this instance: check the integration's projects"
        except ProviderAuthError as exc:
            if exc.status == 401 and _not_permitted(exc):
                return (
                    f"The credential cannot read project {key}: give the token (or its user) "
                    "PROJECT_READ on it."
                )
            raise
        return None

    def _refused_message(self, exc: ProviderError) -> str:
        if self.connector.auth_kind == OAUTH_APPLICATION_LINK.key:
            if "refresh" in exc.message or "not authorised" in exc.message:
                return exc.message
            return "The OAuth access token was refused: reconnect the connector."
        if _not_permitted(exc):
            return (
                "The personal access token is missing or has no access: paste the token (it "
                "needs PROJECT_READ on the projects to import)."
            )
        return (
            "The personal access token was refused: it is wrong, expired or revoked. Create a "
            "new one (Profile → Manage account → HTTP access tokens) with PROJECT_READ."
        )

    # -- repositories --------------------------------------------------------------------------

    def _wanted(self, raw: dict) -> bool:
        pattern = self.target.get("repository_pattern")
        name = raw.get("name") or raw.get("slug") or ""
        return not pattern or re.search(pattern, name) is not None

    def in_target(self, record: RepoRecord) -> bool:
        return self.target_includes(self.target, record.data)

    @classmethod
    def target_includes(cls, target: dict, data: dict) -> bool:
        """The target's filters (projects, name pattern) over a repository's record data."""
        projects = {key.upper() for key in target.get("projects") or []}
        if projects and (data.get("project_key") or "").upper() not in projects:
            return False
        pattern = target.get("repository_pattern")
        name = data.get("name") or data.get("slug") or ""
        return not pattern or re.search(pattern, name) is not None

    @classmethod
    def webhook_concerns(cls, target: dict, event) -> bool:
        from integrations.providers.bitbucket_dc.webhooks import event_repository

        data = event_repository(event)
        return data is None or cls.target_includes(target, data)

    def _record(self, raw: dict, stored: dict | None = None) -> RepoRecord:
        """A repository with its default branch and newest commit (its "updated" time).

        One request reads the branch with its tip; the tip's date is a second one, made only
        when the tip is not the one in ``stored`` (the repository's data from the last sync).
        An unchanged repository therefore costs one request, and is counted in
        ``stats.unchanged``."""
        key, slug = (raw.get("project") or {}).get("key", ""), raw.get("slug", "")
        branch, tip = self.client.default_branch_tip(key, slug)
        stored = stored or {}
        known_updated = records.parse_stored_time(stored.get("updated_on"))
        if (
            tip
            and known_updated is not None
            and stored.get("latest_commit") == tip
            and stored.get("default_branch") == branch
        ):
            self.stats.unchanged += 1
            return records.repository_record(
                raw, default_branch=branch, known_tip=tip, known_updated=known_updated
            )
        if not branch and not stored.get("default_branch") and "default_branch" in stored:
            self.stats.unchanged += 1  # still empty
        try:
            latest = self.client.commit(key, slug, tip) if tip else None
        except ProviderError as exc:
            if not repository_scoped(exc):
                raise
            # Its commits cannot be read: listed without an update time, so the engine reads
            # its commits and records the refusal on the repository.
            latest = None
        return records.repository_record(
            raw, default_branch=branch, latest_commit=latest, known_tip=tip
        )

    def _pages(self) -> Iterator[dict]:
        projects = self.projects
        if not projects:
            yield from self.client.repository_pages()
            return
        for key in projects:
            try:
                yield from self.client.repository_pages(key)
            except ProviderNotFound as exc:
                raise ProviderNotFound(
                    f"No project {key} on the instance (or it was deleted): update the "
                    "integration's projects",
                    status=404,
                ) from exc

    def iter_repositories(
        self,
        since: datetime | None = None,
        known: Callable[[list[str]], dict[str, dict]] | None = None,
    ) -> Iterator[list[RepoRecord]]:
        """All repositories every time: Data Center cannot filter them by change, so ``since``
        is not used. ``known`` (external ids → their stored data, asked once per page) lets an
        unchanged repository cost one request instead of two (see :meth:`_record`)."""
        self._https_check()
        for page in self._pages():
            raws = [
                raw
                for raw in page.get("values", [])
                if raw.get("id") is not None and self._wanted(raw)
            ]
            stored = known([str(raw["id"]) for raw in raws]) if known and raws else {}
            yield [self._record(raw, stored.get(str(raw["id"]))) for raw in raws]

    def get_repository(self, external_id: str, name: str | None = None) -> RepoRecord | None:
        """By ``PROJECT/slug`` (what a webhook names) when given, checked against the id;
        otherwise by id, which Data Center can only find in a listing."""
        self._https_check()
        if name and "/" in name:
            key, slug = name.split("/", 1)
            raw = self.client.repository(key, slug)
            if raw is not None and (not external_id or str(raw.get("id")) == str(external_id)):
                return self._record(raw)
        if not external_id:
            return None
        for page in self.client.repository_pages():
            for raw in page.get("values", []):
                if str(raw.get("id")) == str(external_id):
                    return self._record(raw)
        return None

    # -- secondary kinds -----------------------------------------------------------------------

    @staticmethod
    def _data(repo: Any) -> dict:
        return repo.data if isinstance(repo, RepoRecord) else repo

    def iter_pull_requests(
        self, repo, *, since=None, until=None, limit
    ) -> Iterator[PullRequestRecord]:
        """Newest (most recently updated) first; paging stops at the first one not newer than
        ``since`` — unless the instance turns out not to order by update time, then it reads on."""
        data = self._data(repo)
        if limit <= 0 or not data.get("default_branch"):
            return  # an empty repository has no branches, so no pull requests
        self._https_check()
        count, previous, ordered = 0, None, True
        pages = self.client.pull_request_pages(data["project_key"], data["slug"], limit=limit)
        for page in pages:
            for raw in page.get("values", []):
                pull_request = records.pull_request_record(raw)
                updated = pull_request.updated_on
                if updated is None:
                    continue
                if previous is not None and updated > previous:
                    ordered = False
                previous = updated
                if until is not None and updated >= until:
                    continue
                if since is not None and updated <= since:
                    if ordered:
                        return
                    continue
                yield pull_request
                count += 1
                if count >= limit:
                    return

    def iter_commits(self, repo, *, since=None, until=None, limit) -> Iterator[CommitRecord]:
        data = self._data(repo)
        branch = data.get("default_branch")
        if not branch or limit <= 0:
            return
        self._https_check()
        count = 0
        pages = self.client.commit_pages(data["project_key"], data["slug"], branch, limit=limit)
        for page in pages:
            for raw in page.get("values", []):
                commit = records.commit_record(raw, repository_url=data.get("url", ""))
                if commit.date is None or (until is not None and commit.date >= until):
                    continue
                if since is not None and commit.date <= since:
                    return
                yield commit
                count += 1
                if count >= limit:
                    return

    def read_file(self, repo, path: str) -> bytes | None:
        data = self._data(repo)
        branch = data.get("default_branch")
        if not branch:
            return None
        self._https_check()
        return self.client.file(data["project_key"], data["slug"], f"refs/heads/{branch}", path)

    @classmethod
    def repository_location(cls, url, *, connector, target):
        """``{instance}/projects/{KEY}/repos/{slug}`` and, for a file, ``…/browse/{path}`` (or
        ``raw``) with ``?at=refs/heads/{branch}``."""
        found = url_segments_under(url, (connector.base_url or "").rstrip("/"))
        if found is None or len(found[0]) < 4:
            return None
        (projects, key, repos, slug, *rest), query = found
        if (projects, repos) != ("projects", "repos"):
            return None
        repository = f"{key}/{slug}"
        if not rest or rest[0] not in ("browse", "raw"):
            return RepositoryLocation(repository)
        at = (parse_qs(query).get("at") or [None])[0]
        ref = at.removeprefix("refs/heads/") if at else None
        return RepositoryLocation(repository, ref, "/".join(rest[1:]) or None)

    @classmethod
    def file_url(cls, *, connector, target, repository, ref, path):
        key, _, slug = repository.partition("/")
        base = (connector.base_url or "").rstrip("/")
        at = quote(f"refs/heads/{ref}", safe="/")
        return f"{base}/projects/{key}/repos/{slug}/browse/{quote(path)}?at={at}"

    def _hook_subjects(self) -> list[tuple[str, str | None]]:
        """One hook per chosen project; with every project, one per repository."""
        if self.projects:
            return [(key, None) for key in self.projects]
        return [
            (record.data["project_key"], record.data["slug"])
            for page in self.iter_repositories()
            for record in page
        ]

    def webhook_scopes(self) -> list[str]:
        return [
            f"repository:{key}/{slug}" if slug else f"project:{key}"
            for key, slug in self._hook_subjects()
        ]

    @classmethod
    def webhook_scope_target(cls, scope: str) -> dict:
        project_key, _ = cls._scope_subject(scope)
        return {"projects": [project_key]}

    @staticmethod
    def _scope_subject(scope: str) -> tuple[str, str | None]:
        kind, _, rest = scope.partition(":")
        if kind == "project" and rest:
            return rest, None
        key, _, slug = rest.partition("/")
        if kind == "repository" and key and slug:
            return key, slug
        raise ValueError(f"Not a Bitbucket Data Center webhook scope: {scope!r}")

    def _subjects_of(self, scope: str | None) -> list[tuple[str, str | None]]:
        return self._hook_subjects() if scope is None else [self._scope_subject(scope)]

    def ensure_webhook(
        self, url: str, secret: str, events: list[str] | None = None, *, scope: str | None = None
    ) -> str:
        from integrations.providers.bitbucket_dc import webhooks

        self._https_check()
        ids = []
        for project_key, slug in self._subjects_of(scope):
            hook = webhooks.ensure_webhook(
                self.client,
                project_key=project_key,
                repository_slug=slug,
                url=url,
                secret=secret,
                events=events or webhooks.EVENTS,
            )
            ids.append(str(hook.get("id", "")) if isinstance(hook, dict) else "")
        return ",".join(ids)

    def remove_webhook(self, url: str, *, scope: str | None = None) -> int:
        from integrations.providers.bitbucket_dc import webhooks

        self._https_check()
        return sum(
            webhooks.remove_webhook(self.client, project_key=key, repository_slug=slug, url=url)
            for key, slug in self._subjects_of(scope)
        )

    @staticmethod
    def parse_webhook(headers, body):  # needs no credentials: the endpoint builds no provider
        from integrations.providers.bitbucket_dc.webhooks import parse_webhook

        return parse_webhook(headers, body)

    @classmethod
    def properties(cls, data: dict) -> dict:
        return {key: data.get(key) for key in PROPERTY_KEYS}

    def write_files(self, request):
        from integrations.providers.bitbucket_dc.writes import write_files

        return write_files(self, request)

    def write_access(self, repo=None) -> tuple[bool, str]:
        from integrations.providers.bitbucket_dc.writes import write_access

        return write_access(self, repo)
