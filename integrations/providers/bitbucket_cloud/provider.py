"""The Bitbucket Cloud provider: a workspace's repositories, pull requests and commits."""

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from django.utils import timezone

from integrations.choices import AuthKind, Health
from integrations.providers.base import (
    ProbeResult,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    PullRequestRecord,
    RepoRecord,
)
from integrations.providers.bitbucket_cloud import records
from integrations.providers.bitbucket_cloud.client import (
    DEFAULT_API_URL,
    BasicCredential,
    BearerCredential,
    BitbucketCloudClient,
    OAuthCredential,
    bbql_time,
)

REQUIRED_SCOPES = ("project", "repository", "pullrequest")
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


class BitbucketCloudProvider(Provider):
    key = "bitbucket_cloud"
    name = "Bitbucket Cloud"
    properties_key = "BitbucketCloud"
    auth_kinds = (
        AuthKind.WORKSPACE_ACCESS_TOKEN,
        AuthKind.PROJECT_ACCESS_TOKEN,
        AuthKind.REPOSITORY_ACCESS_TOKEN,
        AuthKind.API_TOKEN,
        AuthKind.APP_PASSWORD,
        AuthKind.OAUTH_CONSUMER,
    )
    target_keys = ("workspace", "projects", "repository_pattern")
    default_field_mappings: ClassVar[dict[str, str]] = {
        "metadata.description": "description",
        "metadata.tags": "tags",
        'metadata.labels."bitbucket.org/project"': "project_key",
        'metadata.annotations."bitbucket.org/repo-url"': "url",
        'metadata.annotations."bitbucket.org/default-branch"': "default_branch",
        'metadata.annotations."backstage.io/source-location"': "source_location",
    }

    def __init__(self, *, connector, integration=None, client: BitbucketCloudClient | None = None):
        super().__init__(connector=connector, integration=integration)
        self.api_url = connector.base_url or DEFAULT_API_URL
        self.client = client or BitbucketCloudClient(
            base_url=self.api_url, credentials=self._credentials(), stats=self.stats
        )

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

    def _credentials(self):
        connector = self.connector
        secrets, config = connector.secrets, connector.config or {}
        kind = connector.auth_kind
        if kind in (
            AuthKind.WORKSPACE_ACCESS_TOKEN,
            AuthKind.PROJECT_ACCESS_TOKEN,
            AuthKind.REPOSITORY_ACCESS_TOKEN,
        ):
            tokens = secrets.get("tokens") or [secrets.get("token")]
            return [BearerCredential(token) for token in tokens if token]
        if kind == AuthKind.API_TOKEN:
            return [BasicCredential(config.get("email", ""), secrets.get("token", ""))]
        if kind == AuthKind.APP_PASSWORD:
            return [BasicCredential(config.get("username", ""), secrets.get("app_password", ""))]
        if kind == AuthKind.OAUTH_CONSUMER:
            return [
                OAuthCredential(
                    token_url=_oauth_token_url(self.api_url),
                    client_id=config.get("client_id", ""),
                    client_secret=secrets.get("client_secret", ""),
                    tokens=secrets,
                    store=self._store_tokens,
                    on_failure=self._mark_down,
                )
            ]
        raise ProviderAuthError(f"Bitbucket Cloud does not support the auth kind {kind!r}")

    def _store_tokens(self, tokens: dict) -> None:
        connector = self.connector
        connector.secrets = {**connector.secrets, **tokens}
        type(connector).objects.filter(pk=connector.pk).update(
            secrets_encrypted=connector.secrets_encrypted
        )

    def _mark_down(self, message: str) -> None:
        type(self.connector).objects.filter(pk=self.connector.pk).update(
            health=Health.DOWN, last_error=message, last_checked_at=timezone.now()
        )

    @property
    def target(self) -> dict:
        return (self.integration.target if self.integration else {}) or {}

    @property
    def workspace(self) -> str:
        return self.target.get("workspace") or self.connector.config.get("workspace", "")

    # -- probe ---------------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        workspace = self.workspace
        try:
            if workspace:
                self.client.workspace(workspace)
                self.client.http.get_json(f"repositories/{workspace}", params={"pagelen": 1})
            else:
                self.client.user()
        except ProviderNotFound:
            return ProbeResult(False, f"No workspace named {workspace!r} (or it is not visible)")
        except ProviderAuthError as exc:
            if exc.status == 403:
                return ProbeResult(
                    False,
                    f"{exc.message}. The credential needs the scopes "
                    f"{', '.join(REQUIRED_SCOPES)} (read).",
                )
            return ProbeResult(
                False,
                f"{exc.message}. Check the token (or the username/app password or email/API "
                "token): it was refused.",
            )
        except ProviderError as exc:
            return ProbeResult(False, exc.message)
        return ProbeResult(
            True, f"Connected to workspace {workspace}" if workspace else "Connected"
        )

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

    def iter_repositories(self, since: datetime | None = None) -> Iterator[list[RepoRecord]]:
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

    def ensure_webhook(self, url: str, secret: str, events: list[str]) -> None:
        raise NotImplementedError("Webhook registration arrives with the webhooks feature")

    @classmethod
    def properties(cls, data: dict) -> dict:
        return {key: data.get(key) for key in PROPERTY_KEYS}
