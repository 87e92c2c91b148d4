"""The Bitbucket Cloud provider: a workspace's repositories, pull requests and commits."""

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from integrations.providers.base import (
    AuthKindSpec,
    ProbeResult,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    PullRequestRecord,
    RepoRecord,
    RepositoryLocation,
    TargetField,
    url_segments_under,
)
from integrations.providers.bitbucket_cloud import records
from integrations.providers.bitbucket_cloud.client import (
    DEFAULT_API_URL,
    DEFAULT_WEB_URL,
    HOURLY_LIMIT,
    BasicCredential,
    BearerCredential,
    BitbucketCloudClient,
    OAuthCredential,
    bbql_time,
)
from integrations.providers.bitbucket_cloud.webhooks import EVENTS as WEBHOOK_EVENTS
from integrations.providers.bitbucket_shared import (
    BITBUCKET_FIELD_MAPPINGS,
    PROJECTS,
    REPOSITORY_PATTERN,
)
from integrations.providers.http import ConnectorNetwork
from integrations.providers.oauth import OAuthRefreshError

REQUIRED_SCOPES = ("project", "repository", "pullrequest")
SCOPE_LABELS = {
    "project": "Projects: Read",
    "repository": "Repositories: Read",
    "pullrequest": "Pull requests: Read",
}
APP_PASSWORDS_RETIRED = (
    "Bitbucket retired app passwords on 2026-06-09 and refuses them now: switch this connector "
    "to an API token (account e-mail + API token) or a workspace access token."
)
UNAUTHORIZED = {
    "workspace_access_token": "The access token was refused: it is wrong, expired or "
    "revoked. Create a new one (Workspace settings → Access tokens).",
    "project_access_token": "The project access token was refused: it is wrong, expired "
    "or revoked.",
    "repository_access_token": "The repository access token was refused: it is wrong, "
    "expired or revoked.",
    "api_token": "The account e-mail or API token was refused: check both (an API token "
    "is used with the Atlassian account's e-mail, not the username).",
    "app_password": "The username or app password was refused. " + APP_PASSWORDS_RETIRED,
    "oauth_consumer": "The OAuth access token was refused: reconnect the connector.",
}
PROPERTY_KEYS = (
    "uuid",
    "name",
    "full_name",
    "url",
    "project_key",
    "project_name",
    "default_branch",
    "tags",
    "visibility",
    "language",
    "description",
    "created_on",
    "updated_on",
    "size",
    "workspace",
)


def _oauth_token_url(api_url: str) -> str:
    """``https://api.bitbucket.org/2.0`` → ``https://bitbucket.org/site/oauth2/access_token``;
    a sandbox serves both on one origin."""
    origin = api_url.split("/2.0")[0].rstrip("/")
    if origin == "https://api.bitbucket.org":
        origin = "https://bitbucket.org"
    return f"{origin}/site/oauth2/access_token"


def _bearer_tokens(provider: "BitbucketCloudProvider") -> list:
    secrets = provider.connector.secrets
    tokens = secrets.get("tokens") or [secrets.get("token")]
    return [BearerCredential(token) for token in tokens if token]


def _basic(identity: str, secret: str) -> Callable[["BitbucketCloudProvider"], list]:
    def build(provider: "BitbucketCloudProvider") -> list:
        config, secrets = provider.connector.config or {}, provider.connector.secrets
        return [BasicCredential(config.get(identity, ""), secrets.get(secret, ""))]

    return build


def _oauth_consumer(provider: "BitbucketCloudProvider") -> list:
    return [
        OAuthCredential.for_provider(
            provider,
            token_url=_oauth_token_url(provider.api_url),
            network=ConnectorNetwork.of(provider.connector),
        )
    ]


WORKSPACE_ACCESS_TOKEN = AuthKindSpec(
    key="workspace_access_token",
    label="Workspace access token",
    secret_fields=("token", "tokens"),
    required=(("token", "tokens"),),
    build_credential=_bearer_tokens,
)
PROJECT_ACCESS_TOKEN = AuthKindSpec(
    key="project_access_token",
    label="Project access token",
    secret_fields=("token",),
    required=(("token",),),
    build_credential=_bearer_tokens,
)
REPOSITORY_ACCESS_TOKEN = AuthKindSpec(
    key="repository_access_token",
    label="Repository access token",
    secret_fields=("token",),
    required=(("token",),),
    build_credential=_bearer_tokens,
)
API_TOKEN = AuthKindSpec(
    key="api_token",
    label="API token (email + token)",
    public_fields=("email",),
    secret_fields=("token",),
    required=(("email",), ("token",)),
    field_labels={"email": "Account email"},
    build_credential=_basic("email", "token"),
)
APP_PASSWORD = AuthKindSpec(
    key="app_password",
    label="App password (legacy)",
    public_fields=("username",),
    secret_fields=("app_password",),
    required=(("username",), ("app_password",)),
    field_labels={"username": "Username"},
    help_text=APP_PASSWORDS_RETIRED,
    build_credential=_basic("username", "app_password"),
)
OAUTH_CONSUMER = AuthKindSpec(
    key="oauth_consumer",
    label="OAuth consumer",
    public_fields=("client_id",),
    secret_fields=("client_secret", "refresh_token", "access_token"),
    required=(("client_id",), ("client_secret",)),
    field_labels={"client_id": "Client id"},
    build_credential=_oauth_consumer,
)


WORKSPACE = TargetField(
    name="workspace",
    label="Workspace",
    help_text="The Bitbucket Cloud workspace slug.",
    max_length=200,
    required=True,
)


class BitbucketCloudProvider(Provider):
    key = "bitbucket_cloud"
    name = "Bitbucket Cloud"
    properties_key = "BitbucketCloud"
    default_base_url = DEFAULT_API_URL
    auth_kinds = (
        WORKSPACE_ACCESS_TOKEN,
        PROJECT_ACCESS_TOKEN,
        REPOSITORY_ACCESS_TOKEN,
        API_TOKEN,
        APP_PASSWORD,
        OAUTH_CONSUMER,
    )
    target_fields = (WORKSPACE, PROJECTS, REPOSITORY_PATTERN)
    # A sandbox on loopback serves plain http; Bitbucket Cloud itself is https.
    plain_http_when_allowlisted = True
    catalog_file = "catalog-info.yaml"
    default_field_mappings = BITBUCKET_FIELD_MAPPINGS
    webhook_events = WEBHOOK_EVENTS

    def __init__(
        self,
        *,
        connector,
        integration=None,
        client: BitbucketCloudClient | None = None,
        **callbacks,
    ):
        super().__init__(connector=connector, integration=integration, **callbacks)
        self.api_url = connector.base_url or DEFAULT_API_URL
        self.client = client or BitbucketCloudClient(
            base_url=self.api_url,
            credentials=self.credentials(),
            stats=self.stats,
            hourly_limit=self._hourly_limit(),
            network=ConnectorNetwork.of(connector),
        )

    def reads_in_background(self) -> bool:
        # A refreshed OAuth token is stored in the database.
        return self.connector.auth_kind != OAUTH_CONSUMER.key

    # -- set-up ------------------------------------------------------------------------------

    @classmethod
    def validate_target(cls, target: dict) -> dict[str, str]:
        errors = super().validate_target(target)
        workspace = target.get("workspace")
        if not isinstance(workspace, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", workspace or ""):
            errors["workspace"] = "the workspace slug is required"
        projects = target.get("projects", [])
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            errors["projects"] = "must be a list of project keys"
        pattern = target.get("repository_pattern")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors["repository_pattern"] = f"invalid regular expression: {exc}"
        return errors

    def _hourly_limit(self) -> int:
        """Requests per hour and credential: 1,000 by default; workspace access tokens of paid
        plans get more (``config.requests_per_hour``, up to 10,000)."""
        value = (self.connector.config or {}).get("requests_per_hour")
        try:
            return max(1, int(value)) if value else HOURLY_LIMIT
        except (TypeError, ValueError):
            return HOURLY_LIMIT

    @property
    def target(self) -> dict:
        return (self.integration.target if self.integration else {}) or {}

    @property
    def workspace(self) -> str:
        return self.target.get("workspace") or self.connector.config.get("workspace", "")

    # -- probe ---------------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        """Credentials, workspace access and each read scope, one small request apiece; the
        message says what to fix."""
        workspace = self.workspace
        details: dict = {"workspace": workspace}
        step_scope: str | None = None
        try:
            if not workspace:
                self.client.user()
                return ProbeResult(True, "Connected (no workspace chosen yet)", details)
            self.client.workspace(workspace)
            step_scope = "project"
            self.client.projects_page(workspace)
            step_scope = "repository"
            page = self.client.repositories_page(workspace)
            details["repositories"] = page.get("size")
            first = next(iter(page.get("values") or []), None)
            if first is not None:
                step_scope = "pullrequest"
                slug = first.get("uuid") or first.get("slug")
                next(self.client.pull_request_pages(workspace, slug, q=None, pagelen=1), None)
        except OAuthRefreshError as exc:
            return ProbeResult(False, exc.message, details)
        except ProviderNotFound as exc:
            if step_scope == "pullrequest":  # the repository went between two requests
                return ProbeResult(False, exc.message, details)
            return ProbeResult(
                False,
                f"No workspace {workspace!r} is visible to this connector: check the workspace "
                "slug (a workspace access token only sees its own workspace).",
                details,
                target_error=True,
            )
        except ProviderAuthError as exc:
            if exc.status == 403 and step_scope:
                details["missing_scope"] = step_scope
                needed = ", ".join(SCOPE_LABELS[scope] for scope in REQUIRED_SCOPES)
                return ProbeResult(
                    False,
                    f"The credential lacks the scope {step_scope} ({SCOPE_LABELS[step_scope]}). "
                    f"Lantern needs {needed}.",
                    details,
                )
            if exc.status == 401:
                return ProbeResult(
                    False, UNAUTHORIZED.get(self.connector.auth_kind, exc.message), details
                )
            return ProbeResult(False, exc.message, details)
        except ProviderError as exc:
            return ProbeResult(False, exc.message, details)
        count = details.get("repositories")
        seen = f" ({count} repositories visible)" if count is not None else ""
        return ProbeResult(True, f"Connected to workspace {workspace}{seen}", details)

    # -- repositories --------------------------------------------------------------------------

    def _repository_query(self, since: datetime | None) -> str | None:
        clauses = []
        projects = self.target.get("projects") or []
        if projects:
            clauses.append("(" + " OR ".join(f'project.key="{key}"' for key in projects) + ")")
        if since is not None:
            clauses.append(f"updated_on > {bbql_time(since)}")
        return " AND ".join(clauses) or None

    def _wanted(self, record: RepoRecord) -> bool:
        pattern = self.target.get("repository_pattern")
        return not pattern or re.search(pattern, record.data["name"]) is not None

    def in_target(self, record: RepoRecord) -> bool:
        return self.target_includes(self.target, record.data)

    @classmethod
    def target_includes(cls, target: dict, data: dict) -> bool:
        """The target's filters (projects, name pattern) over a repository's record data."""
        projects = target.get("projects") or []
        if projects and data.get("project_key") not in projects:
            return False
        pattern = target.get("repository_pattern")
        return not pattern or re.search(pattern, data.get("name") or "") is not None

    @classmethod
    def webhook_concerns(cls, target: dict, event) -> bool:
        from .webhooks import event_repository

        data = event_repository(event)
        return data is None or cls.target_includes(target, data)

    def iter_repositories(
        self, since: datetime | None = None, known=None
    ) -> Iterator[list[RepoRecord]]:
        sort = "-updated_on" if since is not None else None
        for page in self.client.repository_pages(
            self.workspace, q=self._repository_query(since), sort=sort
        ):
            records_ = [records.repository_record(raw) for raw in page.get("values", [])]
            yield [record for record in records_ if record.external_id and self._wanted(record)]

    def get_repository(self, external_id: str, name: str | None = None) -> RepoRecord | None:
        raw = self.client.repository(self.workspace, external_id or name)
        return records.repository_record(raw) if raw else None

    # -- secondary kinds -----------------------------------------------------------------------

    @staticmethod
    def _slug(repo: Any) -> str:
        data = repo.data if isinstance(repo, RepoRecord) else repo
        return data.get("uuid") or data["slug"]

    def iter_pull_requests(
        self, repo, *, since=None, until=None, limit
    ) -> Iterator[PullRequestRecord]:
        data = repo.data if isinstance(repo, RepoRecord) else repo
        if limit <= 0 or ("default_branch" in data and not data["default_branch"]):
            return  # an empty repository has no branches, so no pull requests
        clauses = []
        if since is not None:
            clauses.append(f"updated_on > {bbql_time(since)}")
        if until is not None:
            clauses.append(f"updated_on < {bbql_time(until)}")
        count = 0
        for page in self.client.pull_request_pages(
            self.workspace, self._slug(repo), q=" AND ".join(clauses) or None, pagelen=limit
        ):
            for raw in page.get("values", []):
                yield records.pull_request_record(raw)
                count += 1
                if count >= limit:
                    return

    def iter_commits(self, repo, *, since=None, until=None, limit):
        data = repo.data if isinstance(repo, RepoRecord) else repo
        branch = data.get("default_branch")
        if not branch or limit <= 0:
            return
        count = 0
        for page in self.client.commit_pages(
            self.workspace, self._slug(repo), branch, pagelen=limit
        ):
            for raw in page.get("values", []):
                commit = records.commit_record(raw)
                if commit.date is None or (until is not None and commit.date >= until):
                    continue
                if since is not None and commit.date <= since:
                    return
                yield commit
                count += 1
                if count >= limit:
                    return

    def read_file(self, repo, path: str) -> bytes | None:
        data = repo.data if isinstance(repo, RepoRecord) else repo
        branch = data.get("default_branch")
        if not branch:
            return None
        return self.client.file(self.workspace, self._slug(repo), branch, path)

    @classmethod
    def web_url(cls, connector) -> str:
        """Where people browse the repositories: bitbucket.org for Bitbucket Cloud's API, the
        API's own host (without ``/2.0``) for any other (a sandbox)."""
        api = (connector.base_url or DEFAULT_API_URL).rstrip("/")
        if urlsplit(api).hostname == urlsplit(DEFAULT_API_URL).hostname:
            return DEFAULT_WEB_URL
        return api.removesuffix("/2.0")

    @classmethod
    def repository_location(cls, url, *, connector, target):
        """``{web}/{workspace}/{slug}`` and, for a file, ``…/src/{ref}/{path}`` (or ``raw``)."""
        found = url_segments_under(url, cls.web_url(connector))
        workspace = (target.get("workspace") or connector.config.get("workspace") or "").lower()
        if found is None or len(found[0]) < 2 or found[0][0].lower() != workspace:
            return None
        slug, rest = found[0][1], found[0][2:]
        if len(rest) >= 2 and rest[0] in ("src", "raw"):
            return RepositoryLocation(slug, rest[1], "/".join(rest[2:]) or None)
        return RepositoryLocation(slug)

    @classmethod
    def file_url(cls, *, connector, target, repository, ref, path):
        workspace = target.get("workspace") or connector.config.get("workspace", "")
        return f"{cls.web_url(connector)}/{workspace}/{repository}/src/{quote(ref)}/{quote(path)}"

    def _repository_slugs(self):
        """Lazily: only listed when the workspace hook is refused and repositories need one."""
        return (record.data["slug"] for page in self.iter_repositories() for record in page)

    def webhook_scopes(self) -> list[str]:
        return [f"workspace:{self.workspace}"]

    @classmethod
    def webhook_scope_target(cls, scope: str) -> dict:
        kind, _, workspace = scope.partition(":")
        return {"workspace": workspace} if kind == "workspace" else {}

    def _scope_workspace(self, scope: str | None) -> str:
        if scope is None:
            return self.workspace
        kind, _, workspace = scope.partition(":")
        if kind != "workspace" or not workspace:
            raise ValueError(f"Not a Bitbucket Cloud webhook scope: {scope!r}")
        return workspace

    def ensure_webhook(
        self, url: str, secret: str, events: list[str] | None = None, *, scope: str | None = None
    ) -> str:
        from .webhooks import EVENTS, ensure_webhook

        hooks = ensure_webhook(
            self.client,
            workspace=self._scope_workspace(scope),
            url=url,
            secret=secret,
            events=events or EVENTS,
            repositories=self._repository_slugs(),
        )
        return ",".join(str(hook.get("uuid") or "") for hook in hooks if isinstance(hook, dict))

    def remove_webhook(self, url: str, *, scope: str | None = None) -> int:
        from .webhooks import remove_webhook

        return remove_webhook(
            self.client,
            workspace=self._scope_workspace(scope),
            url=url,
            repositories=self._repository_slugs(),
        )

    @staticmethod
    def parse_webhook(headers, body):  # needs no credentials: the endpoint builds no provider
        from .webhooks import parse_webhook

        return parse_webhook(headers, body)

    @classmethod
    def properties(cls, data: dict) -> dict:
        return {key: data.get(key) for key in PROPERTY_KEYS}

    def write_files(self, request):
        from .writes import write_files

        return write_files(self, request)

    def write_access(self, repo=None) -> tuple[bool, str]:
        from .writes import write_access

        return write_access(self, repo)
