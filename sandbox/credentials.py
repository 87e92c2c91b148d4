"""Who may call the sandbox: access tokens, API tokens, app passwords and OAuth consumers.

Scopes follow Bitbucket's documented implications: ``pullrequest`` implies ``repository`` (but
``repository`` alone does not grant pull requests), ``project`` implies ``repository``, ``:write``
implies its read scope, and ``:admin`` implies nothing. Authentication failures carry Bitbucket's
own messages so a client's error handling meets the real wording.
"""

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from sandbox.world import Repository, Workspace, World

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


class AuthError(Exception):
    """A 401: the credential is missing, wrong or expired."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.detail = detail


class OAuthError(Exception):
    """An OAuth endpoint error (RFC 6749 ``error`` codes)."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


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
class OAuthGrant:
    consumer: str  # client_id
    account: str
    scopes: tuple[str, ...]
    expires_at: float = 0.0
    revoked: bool = False
    redirect_uri: str = ""
    code_challenge: str = ""  # PKCE (Data Center application links)


def _decode_basic(value: str, error: AuthError) -> tuple[str, str]:
    """``login:secret`` from a Basic credential; ``error`` when it does not decode."""
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise error from None
    login, _, secret = raw.partition(":")
    return login, secret


def _authenticated_client(registry: dict, client_id: str, client_secret: str, message: str):
    """The OAuth client registered as ``client_id`` if ``client_secret`` is its secret."""
    client = registry.get(client_id)
    if client is None or not secrets.compare_digest(client.secret, client_secret):
        raise OAuthError("invalid_client", message, status=401)
    return client


def _refused_response_type(response_type: str) -> dict[str, str]:
    return {
        "error": "unsupported_response_type",
        "error_description": f"Unsupported response_type {response_type!r}",
    }


def _redirect(target: str, params: dict[str, str], state: str | None) -> str:
    """``target`` with the authorization result (and ``state``) appended to its query."""
    if state is not None:
        params["state"] = state
    separator = "&" if "?" in target else "?"
    return f"{target}{separator}{urlencode(params)}"


def _expire(grants: dict[str, OAuthGrant], now: float) -> int:
    for grant in grants.values():
        grant.expires_at = min(grant.expires_at, now)
    return len(grants)


_BY_TOKEN = attrgetter("token")
_BY_CLIENT_ID = attrgetter("client_id")


def _restore(registry: dict, records: list[dict], cls, key, *, scopes: bool = True) -> None:
    """Dumped records back into ``registry`` as ``cls`` instances keyed by ``key(item)``."""
    for record in records:
        item = cls(**{**record, "scopes": tuple(record["scopes"])} if scopes else record)
        registry[key(item)] = item


@dataclass
class AuthSettings:
    app_passwords_enabled: bool = False  # Bitbucket retired app passwords on 2026-06-09
    oauth_access_ttl: int = 7200
    oauth_code_ttl: int = 600
    oauth_user: str | None = None  # nickname or uuid who approves; default: first member
    oauth_deny: bool = False


@dataclass
class Credentials:
    world: "World"
    settings: AuthSettings = field(default_factory=AuthSettings)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    api_tokens: dict[tuple[str, str], UserSecret] = field(default_factory=dict)
    app_passwords: dict[tuple[str, str], UserSecret] = field(default_factory=dict)
    consumers: dict[str, OAuthConsumer] = field(default_factory=dict)
    codes: dict[str, OAuthGrant] = field(default_factory=dict)
    oauth_access: dict[str, OAuthGrant] = field(default_factory=dict)
    oauth_refresh: dict[str, OAuthGrant] = field(default_factory=dict)
    dc: "DcCredentials" = field(init=False, repr=False, compare=False)
    _serial: int = 0

    def __post_init__(self) -> None:
        self.dc = DcCredentials(self)

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
                return self._basic(*_decode_basic(value.strip(), malformed))
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
                params = _refused_response_type(response_type)
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
            return _redirect(target, params, state)

    def client(self, client_id: str, client_secret: str) -> OAuthConsumer:
        message = "Invalid OAuth client credentials"
        return _authenticated_client(self.consumers, client_id, client_secret, message)

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
            return _expire(self.oauth_access, self.world.clock.timestamp())

    # -- JSON ---------------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "settings": dict(self.settings.__dict__),
            "access_tokens": [dict(t.__dict__) for t in self.access_tokens.values()],
            "api_tokens": [dict(t.__dict__) for t in self.api_tokens.values()],
            "app_passwords": [dict(t.__dict__) for t in self.app_passwords.values()],
            "oauth_consumers": [dict(c.__dict__) for c in self.consumers.values()],
            **self.dc.dump(),
        }

    def load(self, data: dict) -> None:
        self.settings = AuthSettings(**data.get("settings", {}))
        by_login = attrgetter("login", "secret")
        _restore(self.access_tokens, data.get("access_tokens", []), AccessToken, _BY_TOKEN)
        _restore(self.api_tokens, data.get("api_tokens", []), UserSecret, by_login)
        _restore(self.app_passwords, data.get("app_passwords", []), UserSecret, by_login)
        _restore(self.consumers, data.get("oauth_consumers", []), OAuthConsumer, _BY_CLIENT_ID)
        self.dc.load(data)
        groups = (
            self.access_tokens,
            self.api_tokens,
            self.app_passwords,
            self.consumers,
            self.dc.tokens,
            self.dc.clients,
        )
        ids = [item.id for group in groups for item in group.values()]
        self._serial = max((int(i.rsplit("-", 1)[1]) for i in ids), default=0)


# -- Bitbucket Data Center ---------------------------------------------------------------------

DC_PERMISSIONS = (
    "PROJECT_READ",
    "PROJECT_WRITE",
    "PROJECT_ADMIN",
    "REPO_READ",
    "REPO_WRITE",
    "REPO_ADMIN",
)
DC_OAUTH_SCOPES = (
    "PUBLIC_REPOS",
    "REPO_READ",
    "REPO_WRITE",
    "REPO_ADMIN",
    "PROJECT_ADMIN",
    "ACCOUNT_WRITE",
    "SYSTEM_ADMIN",
)
# Data Center's own 401 messages: the same status for a bad credential and a missing permission.
DC_BAD_CREDENTIALS = "Authentication failed. Please check your credentials and try again."
DC_NOT_PERMITTED = "You are not permitted to access this resource"
DC_EXPIRED = "The access token has expired"
DC_REDIRECT_MISMATCH = (
    "The redirect_uri does not match the redirect URL of this application link"  # [guess]
)


@dataclass
class DcAccessToken:
    """A Data Center HTTP access token (a personal access token) acting as ``account``.

    ``projects``: the keys of the projects it holds ``permission`` on (PROJECT_READ or more);
    None for every project its user can see."""

    id: str
    token: str
    name: str
    account: str
    permission: str = "PROJECT_READ"
    projects: list[str] | None = None


@dataclass
class DcOAuthClient:
    """An incoming application link (OAuth 2.0) with its one redirect URL."""

    id: str
    client_id: str
    secret: str
    redirect_uri: str
    scopes: tuple[str, ...] = ("REPO_READ",)


@dataclass(frozen=True)
class DcPrincipal:
    id: str
    kind: str  # token | oauth
    account: str
    permission: str
    projects: frozenset[str] | None = None

    @property
    def budget(self) -> str:
        """Data Center rate-limits per user, whatever the credential."""
        return f"user:{self.account}"

    def sees_project(self, key: str) -> bool:
        return self.projects is None or key in self.projects


def _pkce_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class DcCredentials:
    """Personal access tokens and application links of the Data Center sandbox (the Cloud ones
    above are not accepted there, nor these by the Cloud sandbox)."""

    access_ttl = 7200
    code_ttl = 600

    def __init__(self, parent: Credentials):
        self.parent = parent
        self.tokens: dict[str, DcAccessToken] = {}
        self.clients: dict[str, DcOAuthClient] = {}
        self.codes: dict[str, OAuthGrant] = {}
        self.access: dict[str, OAuthGrant] = {}
        self.refresh: dict[str, OAuthGrant] = {}

    @property
    def world(self) -> "World":
        return self.parent.world

    def _user(self, user: str | None) -> str:
        if user is None:
            return self.parent._default_user()
        for account in self.world.accounts.values():
            if user in (account.uuid, account.nickname, account.email):
                return account.uuid
        raise ValueError(f"No user {user!r}")

    def add_token(
        self,
        token: str,
        *,
        user: str | None = None,
        projects=None,
        permission: str = "PROJECT_READ",
        name: str | None = None,
    ) -> DcAccessToken:
        """A personal access token of ``user`` (default: the first member) with ``permission``
        on ``projects`` (keys; None: all)."""
        if permission not in DC_PERMISSIONS:
            known = ", ".join(DC_PERMISSIONS)
            raise ValueError(f"Unknown permission {permission!r}; known: {known}")
        with self.world.lock:
            item = DcAccessToken(
                id=self.parent._next_id("dc-token"),
                token=token,
                name=name or f"token {len(self.tokens) + 1}",
                account=self._user(user),
                permission=permission,
                projects=None if projects is None else [str(key).upper() for key in projects],
            )
            self.tokens[token] = item
            return item

    def add_client(
        self, *, client_id: str, secret: str, redirect_uri: str, scopes=("REPO_READ",)
    ) -> DcOAuthClient:
        unknown = [scope for scope in scopes if scope not in DC_OAUTH_SCOPES]
        if unknown:
            raise ValueError(f"Unknown scopes: {', '.join(unknown)}")
        with self.world.lock:
            item = DcOAuthClient(
                self.parent._next_id("dc-oauth-client"),
                client_id,
                secret,
                redirect_uri,
                tuple(scopes),
            )
            self.clients[client_id] = item
            return item

    # -- authentication -----------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> DcPrincipal | None:
        """Bearer tokens (personal or OAuth), or Basic ``username:token``; None without a header."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        with self.world.lock:
            if scheme.lower() == "basic":
                username, value = _decode_basic(value, AuthError(DC_BAD_CREDENTIALS))
                item = self.tokens.get(value)
                account = self.world.account(item.account) if item else None
                if account is None or account.nickname != username:
                    raise AuthError(DC_BAD_CREDENTIALS)
            elif scheme.lower() != "bearer":
                raise AuthError(DC_BAD_CREDENTIALS)
            item = self.tokens.get(value)
            if item is not None:
                projects = None if item.projects is None else frozenset(item.projects)
                return DcPrincipal(item.id, "token", item.account, item.permission, projects)
            grant = self.access.get(value)
            if grant is None or grant.revoked:
                raise AuthError(DC_BAD_CREDENTIALS)
            if grant.expires_at <= self.world.clock.timestamp():
                raise AuthError(DC_EXPIRED)
            client = self.clients.get(grant.consumer)
            return DcPrincipal(
                client.id if client else f"dc-oauth:{grant.consumer}",
                "oauth",
                grant.account,
                "REPO_READ",
            )

    # -- OAuth 2.0 (application links) ----------------------------------------------------------

    def authorize(
        self,
        *,
        client_id: str,
        redirect_uri: str | None,
        response_type: str,
        state: str | None,
        code_challenge: str = "",
        code_challenge_method: str = "",
    ) -> str:
        """The redirect after the user approves (always, for the configured user). The redirect
        URI is recorded and checked when the code is exchanged, as the token endpoint does."""
        with self.world.lock:
            client = self.clients.get(client_id)
            if client is None:
                raise OAuthError("invalid_client", f"Invalid client_id {client_id!r}")
            target = redirect_uri or client.redirect_uri
            params: dict[str, str]
            if response_type != "code":
                params = _refused_response_type(response_type)
            elif code_challenge and code_challenge_method != "S256":
                params = {
                    "error": "invalid_request",
                    "error_description": "code_challenge_method must be S256",
                }
            else:
                code = secrets.token_urlsafe(18)
                self.codes[code] = OAuthGrant(
                    consumer=client_id,
                    account=self.parent._default_user(),
                    scopes=client.scopes,
                    expires_at=self.world.clock.timestamp() + self.code_ttl,
                    redirect_uri=target,
                    code_challenge=code_challenge,
                )
                params = {"code": code}
            return _redirect(target, params, state)

    def client(self, client_id: str, client_secret: str) -> DcOAuthClient:
        message = "Client authentication failed"
        return _authenticated_client(self.clients, client_id, client_secret, message)

    def token(self, client: DcOAuthClient, form: dict[str, str]) -> dict:
        """``/rest/oauth2/latest/token``. A refresh issues a new refresh token and retires the
        old one [guess: Data Center rotates them]."""
        grant_type = form.get("grant_type", "")
        with self.world.lock:
            now = self.world.clock.timestamp()
            if grant_type == "authorization_code":
                grant = self.codes.pop(form.get("code", ""), None)
                if grant is None or grant.consumer != client.client_id or grant.expires_at < now:
                    raise OAuthError("invalid_grant", "Invalid or expired authorization code")
                redirect_uri = form.get("redirect_uri", "")
                if redirect_uri != grant.redirect_uri or redirect_uri != client.redirect_uri:
                    raise OAuthError("invalid_grant", DC_REDIRECT_MISMATCH)
                if grant.code_challenge and grant.code_challenge != _pkce_s256(
                    form.get("code_verifier", "")
                ):
                    raise OAuthError("invalid_grant", "PKCE verification failed")
                return self._issue(client, grant.account, grant.scopes)
            if grant_type == "refresh_token":
                grant = self.refresh.pop(form.get("refresh_token", ""), None)
                if grant is None or grant.revoked or grant.consumer != client.client_id:
                    raise OAuthError("invalid_grant", "The refresh token is invalid or expired")
                return self._issue(client, grant.account, grant.scopes)
            raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")

    def _issue(self, client: DcOAuthClient, account: str, scopes) -> dict:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires_at = self.world.clock.timestamp() + self.access_ttl
        self.access[access] = OAuthGrant(client.client_id, account, scopes, expires_at)
        self.refresh[refresh] = OAuthGrant(client.client_id, account, scopes)
        return {
            "scope": " ".join(scopes),
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.access_ttl,
            "token_type": "bearer",
        }

    def expire_access_tokens(self) -> int:
        with self.world.lock:
            return _expire(self.access, self.world.clock.timestamp())

    # -- JSON ---------------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "dc_tokens": [dict(t.__dict__) for t in self.tokens.values()],
            "dc_oauth_clients": [dict(c.__dict__) for c in self.clients.values()],
        }

    def load(self, data: dict) -> None:
        _restore(self.tokens, data.get("dc_tokens", []), DcAccessToken, _BY_TOKEN, scopes=False)
        _restore(self.clients, data.get("dc_oauth_clients", []), DcOAuthClient, _BY_CLIENT_ID)
