"""Who may call the Data Center sandbox: personal access tokens (HTTP access tokens) and
incoming application links (OAuth 2.0 with PKCE). Failures carry Data Center's own messages;
ids are numbered by the Cloud credentials beside them (``parent``), one serial for both."""

import base64
import hashlib
import secrets
from dataclasses import dataclass
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
    from sandbox.cloud.credentials import CloudCredentials
    from sandbox.world.mutations import WorldMutations


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
    are not accepted there, nor these by the Cloud sandbox)."""

    access_ttl = 7200
    code_ttl = 600

    def __init__(self, parent: "CloudCredentials"):
        self.parent = parent
        self.tokens: dict[str, DcAccessToken] = {}
        self.clients: dict[str, DcOAuthClient] = {}
        self.codes: dict[str, OAuthGrant] = {}
        self.access: dict[str, OAuthGrant] = {}
        self.refresh: dict[str, OAuthGrant] = {}

    @property
    def world(self) -> "WorldMutations":
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
                username, value = decode_basic(value, AuthError(DC_BAD_CREDENTIALS))
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

    def consent_client(self, client_id: str) -> DcOAuthClient:
        """The application link a consent page is shown for; an unknown one is an error page,
        never a redirect (nothing says where to)."""
        with self.world.lock:
            client = self.clients.get(client_id)
            if client is None:
                raise OAuthError("invalid_client", f"Invalid client_id {client_id!r}")
            return client

    def consent_user(self) -> str:
        """Who the consent page says is signed in (the world's first member)."""
        with self.world.lock:
            account = self.world.account(self.parent._default_user())
            return account.display_name if account else "admin"

    def authorize(
        self,
        *,
        client_id: str,
        redirect_uri: str | None,
        response_type: str,
        state: str | None,
        code_challenge: str = "",
        code_challenge_method: str = "",
        approved: bool = True,
    ) -> str:
        """The redirect after the user's answer on the consent page: a code when ``approved``
        (for the first member), ``error=access_denied`` when declined. The redirect URI is
        recorded and checked when the code is exchanged, as the token endpoint does."""
        with self.world.lock:
            client = self.clients.get(client_id)
            if client is None:
                raise OAuthError("invalid_client", f"Invalid client_id {client_id!r}")
            target = redirect_uri or client.redirect_uri
            params: dict[str, str]
            if not approved:
                params = {
                    "error": "access_denied",
                    "error_description": "The user declined the authorisation",
                }
            elif response_type != "code":
                params = refused_response_type(response_type)
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
            return redirect_with(target, params, state)

    def client(self, client_id: str, client_secret: str) -> DcOAuthClient:
        message = "Client authentication failed"
        return authenticated_client(self.clients, client_id, client_secret, message)

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
            return expire_grants(self.access, self.world.clock.timestamp())

    def revoke_client(self, client_id: str) -> int:
        """What a user revoking the application's access does: every access and refresh token
        of the application link stops working. Returns how many were revoked."""
        with self.world.lock:
            grants = [
                grant
                for grant in (*self.access.values(), *self.refresh.values())
                if grant.consumer == client_id and not grant.revoked
            ]
            for grant in grants:
                grant.revoked = True
            return len(grants)

    def revoke_token(self, token: str) -> bool:
        """Delete a personal access token (``add_token`` with the same value restores it)."""
        with self.world.lock:
            return self.tokens.pop(token, None) is not None

    # -- JSON ---------------------------------------------------------------------------------

    def dump(self) -> dict:
        return {
            "dc_tokens": [dict(t.__dict__) for t in self.tokens.values()],
            "dc_oauth_clients": [dict(c.__dict__) for c in self.clients.values()],
        }

    def load(self, data: dict) -> None:
        restore(self.tokens, data.get("dc_tokens", []), DcAccessToken, BY_TOKEN, scopes=False)
        restore(self.clients, data.get("dc_oauth_clients", []), DcOAuthClient, BY_CLIENT_ID)
