"""Who may call the Cloud sandbox: access tokens, API tokens, app passwords and OAuth consumers.

Scopes follow Bitbucket's documented implications: ``pullrequest`` implies ``repository`` (but
``repository`` alone does not grant pull requests), ``project`` implies ``repository``, ``:write``
implies its read scope, and ``:admin`` implies nothing. Authentication failures carry Bitbucket's
own messages so a client's error handling meets the real wording.
"""

import secrets
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING

from sandbox.auth import (
    BY_CLIENT_ID,
    BY_TOKEN,
    AuthError,
    OAuthError,
    OAuthGrant,
    authenticated_client,
    decode_basic,
    expire_grants,
    redirect_with,
    refused_response_type,
    restore,
)

if TYPE_CHECKING:
    from sandbox.world.mutations import WorldMutations
    from sandbox.world.store import Repository, Workspace


READ_SCOPES = ("repository", "pullrequest", "project", "account", "webhook")

ALL_SCOPES = (
    "account",
    "account:write",
    "email",
    "issue",
    "issue:write",
    "pipeline",
    "pipeline:variable",
    "pipeline:write",
    "project",
    "project:admin",
    "project:write",
    "pullrequest",
    "pullrequest:write",
    "repository",
    "repository:admin",
    "repository:delete",
    "repository:write",
    "runner",
    "runner:write",
    "snippet",
    "snippet:write",
    "team",
    "team:write",
    "webhook",
    "wiki",
)

IMPLIES = {
    "repository:write": {"repository"},
    "pullrequest": {"repository"},
    "pullrequest:write": {"pullrequest", "repository:write"},
    "project": {"repository"},
    "project:write": {"project"},
    "account:write": {"account"},
    "issue:write": {"issue"},
    "snippet:write": {"snippet"},
    "pipeline:write": {"pipeline"},
    "runner:write": {"runner"},
    "team:write": {"team"},
}

# Bitbucket's own 401 messages (not secrets).
REFUSED_MESSAGE = "Token is invalid, expired, or not supported for this endpoint."

EXPIRED_MESSAGE = "Access token expired. Use your refresh token to obtain a new access token."


def expand_scopes(scopes) -> frozenset[str]:
    granted: set[str] = set()
    pending = list(scopes)
    while pending:
        scope = pending.pop()
        if scope not in granted:
            granted.add(scope)
            pending.extend(IMPLIES.get(scope, ()))
    return frozenset(granted)


def _check_scopes(scopes) -> tuple[str, ...]:
    scopes = tuple(scopes)
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"Unknown scopes: {', '.join(unknown)}")
    return scopes


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. ``id`` names the credential without revealing it (logs, rate
    limits); the restrictions say what an access token can see."""

    id: str
    kind: (
        str  # workspace_token|project_token|repository_token|api_token|app_password|oauth|anonymous
    )
    scopes: frozenset[str]
    granted: tuple[str, ...] = ()
    account: str | None = None
    workspace: str | None = None  # workspace uuid an access token is bound to
    project: str | None = None  # project key (project tokens)
    repository: str | None = None  # repository uuid (repository tokens)
    rate_key: str = ""  # whose budget: the token, the user (passwords) or the OAuth consumer

    @property
    def budget(self) -> str:
        return self.rate_key or self.id

    @property
    def is_access_token(self) -> bool:
        return self.kind.endswith("_token") and self.kind != "api_token"

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"

    def has_scope(self, scope: str | None) -> bool:
        return scope is None or scope in self.scopes

    def sees_workspace(self, ws: "Workspace") -> bool:
        if self.workspace is not None:
            return ws.uuid == self.workspace
        if self.anonymous:
            return any(not r.is_private for r in ws.repositories.values())
        return self.account in ws.members

    def sees_repository(self, ws: "Workspace", repo: "Repository") -> bool:
        if not self.sees_workspace(ws):
            return False
        if self.repository is not None:
            return repo.uuid == self.repository
        if self.project is not None:
            return repo.project_key == self.project
        if self.anonymous:
            return not repo.is_private
        return True


def anonymous(address: str) -> Principal:
    return Principal(id=f"anonymous:{address}", kind="anonymous", scopes=expand_scopes(READ_SCOPES))


@dataclass
class AccessToken:
    id: str
    token: str
    kind: str  # workspace_token | project_token | repository_token
    workspace: str  # uuid
    scopes: tuple[str, ...]
    name: str
    account: str  # the bot account the token acts as
    project: str | None = None
    repository: str | None = None  # uuid


@dataclass
class UserSecret:
    """An API token (``login`` is the e-mail) or an app password (``login`` is the username)."""

    id: str
    login: str
    secret: str
    account: str
    scopes: tuple[str, ...]


@dataclass
class OAuthConsumer:
    id: str
    client_id: str
    secret: str
    callback_url: str
    scopes: tuple[str, ...]
    owner: str  # account uuid for the client_credentials grant


@dataclass
class AuthSettings:
    app_passwords_enabled: bool = False  # Bitbucket retired app passwords on 2026-06-09
    oauth_access_ttl: int = 7200
    oauth_code_ttl: int = 600
    oauth_user: str | None = None  # nickname or uuid who approves; default: first member
    oauth_deny: bool = False


@dataclass
class CloudCredentials:
    """The Cloud sandbox's credentials: workspace, project and repository access tokens, API
    tokens, app passwords and OAuth consumers."""

    world: "WorldMutations"
    settings: AuthSettings = field(default_factory=AuthSettings)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    api_tokens: dict[tuple[str, str], UserSecret] = field(default_factory=dict)
    app_passwords: dict[tuple[str, str], UserSecret] = field(default_factory=dict)
    consumers: dict[str, OAuthConsumer] = field(default_factory=dict)
    codes: dict[str, OAuthGrant] = field(default_factory=dict)
    oauth_access: dict[str, OAuthGrant] = field(default_factory=dict)
    oauth_refresh: dict[str, OAuthGrant] = field(default_factory=dict)
    _serial: int = 0

    def _registries(self) -> tuple[dict, ...]:
        """Every registry whose items carry an ``id`` numbered by ``_next_id``."""
        return (self.access_tokens, self.api_tokens, self.app_passwords, self.consumers)

    def _next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self._serial}"

    # -- registration -------------------------------------------------------------------------

    def add_access_token(
        self,
        token: str,
        *,
        workspace: str,
        scopes=READ_SCOPES,
        project: str | None = None,
        repository: str | None = None,
        name: str | None = None,
    ) -> AccessToken:
        """A workspace token; with ``project`` a project token, with ``repository`` (a slug or
        uuid) a repository token. It acts as its own bot account, as on Bitbucket."""
        with self.world.lock:
            ws = self.world.workspace(workspace)
            kind = "workspace_token"
            repo_uuid = None
            if repository:
                repo = self.world.repository(ws.slug, repository)
                kind, repo_uuid = "repository_token", repo.uuid
            elif project:
                if project not in ws.projects:
                    raise ValueError(f"No project {project} in {ws.slug}")
                kind = "project_token"
            name = name or f"{kind.replace('_', ' ')} {len(self.access_tokens) + 1}"
            bot = self.world.add_account(
                nickname=f"{ws.slug}-{kind.split('_')[0]}-bot-{len(self.access_tokens) + 1}",
                display_name=name,
                email=f"{kind.split('_')[0]}-token-{len(self.access_tokens) + 1}@bots.sandbox",
                kind="bot",
            )
            item = AccessToken(
                id=self._next_id(kind.replace("_", "-")),
                token=token,
                kind=kind,
                workspace=ws.uuid,
                scopes=_check_scopes(scopes),
                name=name,
                account=bot.uuid,
                project=project if kind == "project_token" else None,
                repository=repo_uuid,
            )
            self.access_tokens[token] = item
            return item

    def add_api_token(self, *, email: str, token: str, scopes=ALL_SCOPES) -> UserSecret:
        """An Atlassian API token: Basic ``email:token``."""
        with self.world.lock:
            account = self.world.account_by_email(email)
            if account is None:
                raise ValueError(f"No account with e-mail {email}")
            item = UserSecret(
                self._next_id("api-token"),
                email.lower(),
                token,
                account.uuid,
                _check_scopes(scopes),
            )
            self.api_tokens[(item.login, token)] = item
            return item

    def add_app_password(self, *, username: str, password: str, scopes=READ_SCOPES) -> UserSecret:
        """An app password: Basic ``username:app_password`` (refused unless enabled)."""
        with self.world.lock:
            account = next(
                (a for a in self.world.accounts.values() if a.nickname == username), None
            )
            if account is None:
                raise ValueError(f"No account with username {username}")
            item = UserSecret(
                self._next_id("app-password"), username, password, account.uuid, tuple(scopes)
            )
            self.app_passwords[(username, password)] = item
            return item

    def add_oauth_consumer(
        self,
        *,
        client_id: str,
        secret: str,
        callback_url: str,
        scopes=READ_SCOPES,
        owner: str | None = None,
    ) -> OAuthConsumer:
        with self.world.lock:
            owner = owner or self._default_user()
            item = OAuthConsumer(
                self._next_id("oauth-consumer"),
                client_id,
                secret,
                callback_url,
                _check_scopes(scopes),
                owner,
            )
            self.consumers[client_id] = item
            return item

    def forget_repository(self, repo_uuid: str) -> None:
        """Bitbucket deactivates a repository's access tokens when it is deleted."""
        for token, item in list(self.access_tokens.items()):
            if item.repository == repo_uuid:
                del self.access_tokens[token]

    def _default_user(self) -> str:
        wanted = self.settings.oauth_user
        for account in self.world.accounts.values():
            if wanted and wanted in (account.uuid, account.nickname, account.email):
                return account.uuid
        for ws in self.world.workspaces.values():
            if ws.members:
                return ws.members[0]
        raise ValueError("The world has no user to act as")

    # -- authentication -----------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization`` header; None when there is none."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        with self.world.lock:
            if scheme == "bearer":
                return self._bearer(value.strip())
            if scheme == "basic":
                malformed = AuthError("Invalid credentials", "Malformed Basic credentials")
                return self._basic(*decode_basic(value.strip(), malformed))
        raise AuthError("Invalid credentials", f"Unsupported authorization scheme {scheme!r}")

    def _bearer(self, token: str) -> Principal:
        item = self.access_tokens.get(token)
        if item is not None:
            return Principal(
                id=item.id,
                kind=item.kind,
                scopes=expand_scopes(item.scopes),
                granted=item.scopes,
                account=item.account,
                workspace=item.workspace,
                project=item.project,
                repository=item.repository,
            )
        grant = self.oauth_access.get(token)
        if grant is not None and not grant.revoked:
            if grant.expires_at <= self.world.clock.timestamp():
                raise AuthError(EXPIRED_MESSAGE)
            consumer = self.consumers.get(grant.consumer)
            return Principal(
                id=consumer.id if consumer else f"oauth:{grant.consumer}",
                kind="oauth",
                scopes=expand_scopes(grant.scopes),
                granted=grant.scopes,
                account=grant.account,
            )
        raise AuthError(REFUSED_MESSAGE)

    def _basic(self, login: str, secret: str) -> Principal:
        if login == "x-token-auth":
            return self._bearer(secret)
        if "@" in login:
            item = self.api_tokens.get((login.lower(), secret))
            if item is None:
                raise AuthError("Invalid credentials", "The e-mail or API token is wrong.")
            kind = "api_token"
        else:
            item = self.app_passwords.get((login, secret))
            if item is None:
                raise AuthError("Invalid credentials", "The username or app password is wrong.")
            if not self.settings.app_passwords_enabled:
                raise AuthError(
                    "Invalid credentials",
                    "App passwords are no longer supported; use an API token.",
                )
            kind = "app_password"
        return Principal(
            id=item.id,
            kind=kind,
            scopes=expand_scopes(item.scopes),
            granted=item.scopes,
            account=item.account,
            rate_key=f"user:{item.account}",
        )

    # -- OAuth 2 ------------------------------------------------------------------------------

    def authorize(
        self, *, client_id: str, response_type: str, state: str | None, redirect_uri: str | None
    ) -> str:
        """The redirect of ``/site/oauth2/authorize``: auto-approved for the configured user,
        or ``error=access_denied`` when the sandbox is told to deny."""
        with self.world.lock:
            consumer = self.consumers.get(client_id)
            if consumer is None:
                raise OAuthError("invalid_client", f"Invalid client_id {client_id!r}")
            target = redirect_uri or consumer.callback_url
            if not consumer.callback_url or not target.startswith(consumer.callback_url):
                raise OAuthError("invalid_request", "redirect_uri does not match the callback URL")
            params: dict[str, str] = {}
            if response_type != "code":
                params = refused_response_type(response_type)
            elif self.settings.oauth_deny:
                params = {
                    "error": "access_denied",
                    "error_description": "The user denied access to the consumer.",
                }
            else:
                code = secrets.token_urlsafe(18)
                self.codes[code] = OAuthGrant(
                    consumer=client_id,
                    account=self._default_user(),
                    scopes=consumer.scopes,
                    expires_at=self.world.clock.timestamp() + self.settings.oauth_code_ttl,
                    redirect_uri=redirect_uri or "",
                )
                params = {"code": code}
            return redirect_with(target, params, state)

    def client(self, client_id: str, client_secret: str) -> OAuthConsumer:
        message = "Invalid OAuth client credentials"
        return authenticated_client(self.consumers, client_id, client_secret, message)

    def token(self, consumer: OAuthConsumer, form: dict[str, str]) -> dict:
        """``/site/oauth2/access_token`` for one authenticated consumer."""
        grant_type = form.get("grant_type", "")
        with self.world.lock:
            now = self.world.clock.timestamp()
            if grant_type == "authorization_code":
                grant = self.codes.pop(form.get("code", ""), None)
                if grant is None or grant.consumer != consumer.client_id or grant.expires_at < now:
                    raise OAuthError(
                        "invalid_grant", "The authorization code is invalid or expired"
                    )
                if grant.redirect_uri and form.get("redirect_uri", "") != grant.redirect_uri:
                    raise OAuthError("invalid_grant", "redirect_uri does not match")
                return self._issue(consumer, grant.account, grant.scopes, grant_type)
            if grant_type == "refresh_token":
                token = form.get("refresh_token", "")
                grant = self.oauth_refresh.get(token)
                if grant is None or grant.revoked or grant.consumer != consumer.client_id:
                    raise OAuthError("invalid_grant", "Invalid refresh_token")
                return self._issue(consumer, grant.account, grant.scopes, grant_type, token)
            if grant_type == "client_credentials":
                return self._issue(consumer, consumer.owner, consumer.scopes, grant_type)
            raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")

    def _issue(self, consumer, account, scopes, grant_type, refresh_token=None) -> dict:
        """A new access token; Bitbucket keeps the refresh token across refreshes."""
        access = secrets.token_urlsafe(32)
        ttl = self.settings.oauth_access_ttl
        self.oauth_access[access] = OAuthGrant(
            consumer=consumer.client_id,
            account=account,
            scopes=scopes,
            expires_at=self.world.clock.timestamp() + ttl,
        )
        if refresh_token is None:
            refresh_token = secrets.token_urlsafe(24)
            self.oauth_refresh[refresh_token] = OAuthGrant(
                consumer=consumer.client_id, account=account, scopes=scopes
            )
        return {
            "access_token": access,
            "scopes": " ".join(scopes),
            "expires_in": ttl,
            "refresh_token": refresh_token,
            "token_type": "bearer",
            "state": grant_type,
        }

    def revoke_refresh_token(self, token: str) -> bool:
        with self.world.lock:
            grant = self.oauth_refresh.get(token)
            if grant is None:
                return False
            grant.revoked = True
            return True

    def expire_access_tokens(self) -> int:
        with self.world.lock:
            return expire_grants(self.oauth_access, self.world.clock.timestamp())

    # -- JSON ---------------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "settings": dict(self.settings.__dict__),
            "access_tokens": [dict(t.__dict__) for t in self.access_tokens.values()],
            "api_tokens": [dict(t.__dict__) for t in self.api_tokens.values()],
            "app_passwords": [dict(t.__dict__) for t in self.app_passwords.values()],
            "oauth_consumers": [dict(c.__dict__) for c in self.consumers.values()],
        }

    def load(self, data: dict) -> None:
        self.settings = AuthSettings(**data.get("settings", {}))
        by_login = attrgetter("login", "secret")
        restore(self.access_tokens, data.get("access_tokens", []), AccessToken, BY_TOKEN)
        restore(self.api_tokens, data.get("api_tokens", []), UserSecret, by_login)
        restore(self.app_passwords, data.get("app_passwords", []), UserSecret, by_login)
        restore(self.consumers, data.get("oauth_consumers", []), OAuthConsumer, BY_CLIENT_ID)
        ids = [item.id for group in self._registries() for item in group.values()]
        self._serial = max((int(i.rsplit("-", 1)[1]) for i in ids), default=0)
