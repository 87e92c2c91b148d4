"""The OAuth 2.0 access token both Bitbucket providers use: renewed with its refresh token when it
expires, the renewed tokens handed to ``store`` and a refused renewal to ``on_failure`` (the
engine's callbacks: a provider never writes rows itself).

Only the token request differs between providers (:meth:`OAuthCredential.token_request`). The
refresh stays hand-written rather than authlib's: the failure messages, the connector marked down
and Cloud's client-credentials fallback are what the tests pin.
"""

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import NoReturn

from integrations.providers.base import ProviderAuthError
from integrations.providers.http import Credential


class OAuthRefreshError(ProviderAuthError):
    """The token endpoint refused to renew the OAuth access token (or could not be reached)."""


def budget_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(verifier, S256 challenge)``: the challenge goes in the authorize URL, the
    verifier (kept server-side) with the code, so a stolen code alone is worth nothing."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


# What a refused renewal asks a person to do, by the token endpoint's ``error``.
REFRESH_FIXES = {
    "invalid_grant": (
        "the refresh token was revoked, expired or already used; reconnect the connector "
        "(Connect on its page) to authorise Lantern again"
    ),
    "invalid_client": "the client id or secret was refused; copy both again into the connector",
}


class BearerCredential(Credential):
    """A token sent as ``Authorization: Bearer`` (Cloud's access tokens, Data Center's personal
    access tokens), with a request budget of its own."""

    def __init__(self, token: str):
        self._token = token
        self.budget_key = budget_key(token)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def secrets(self) -> list[str]:
        return [self._token, f"Bearer {self._token}"]


def token_fields(body: dict, *, previous_refresh: str | None = None) -> dict:
    """What is stored of a token response (the refresh token is rotated when a new one comes)."""
    return {
        "access_token": body["access_token"],
        "refresh_token": body.get("refresh_token") or previous_refresh or "",
        "expires_at": time.time() + int(body.get("expires_in") or 3600) - 60,
    }


class OAuthCredential(Credential):
    """An OAuth access token, renewed when it is missing or expired."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        tokens: dict,
        store: Callable[[dict], None],
        on_failure: Callable[[str], None],
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.tokens = dict(tokens)
        self.store = store
        self.on_failure = on_failure
        self.budget_key = budget_key(client_id)

    @classmethod
    def for_provider(cls, provider, **options) -> "OAuthCredential":
        """The credential of a provider's connector: the client id in its config, the client
        secret and tokens in its secrets, renewals and failures handed to the provider's
        callbacks; ``options`` are the subclass's own (its token endpoint)."""
        config, secrets = provider.connector.config or {}, provider.connector.secrets
        return cls(
            client_id=config.get("client_id", ""),
            client_secret=secrets.get("client_secret", ""),
            tokens=secrets,
            store=provider.store_tokens,
            on_failure=provider.mark_down,
            **options,
        )

    def headers(self) -> dict[str, str]:
        if not self.tokens.get("access_token") or self.tokens.get("expires_at", 0) < time.time():
            self.refresh()
        return {"Authorization": f"Bearer {self.tokens.get('access_token', '')}"}

    def secrets(self) -> list[str]:
        return [
            self.client_secret,
            self.tokens.get("access_token") or "",
            self.tokens.get("refresh_token") or "",
        ]

    def token_request(self, refresh_token: str | None) -> tuple[int, dict, str]:
        """Ask the token endpoint for a new access token: ``(status, body, reason)``, where
        ``reason`` (already masked) explains a refusal whose body says nothing. A failure to
        reach the endpoint calls :meth:`fail`."""
        raise NotImplementedError

    def fail(self, message: str, *, status: int | None = None) -> NoReturn:
        self.on_failure(message)
        raise OAuthRefreshError(message, status=status)

    def refresh(self) -> bool:
        refresh_token = self.tokens.get("refresh_token")
        status, body, fallback = self.token_request(refresh_token)
        if status != 200 or not body.get("access_token"):
            error = str(body.get("error") or "")
            reason = body.get("error_description") or error or fallback
            fix = REFRESH_FIXES.get(error, "reconnect the connector")
            if error in REFRESH_FIXES:
                fix = f"{error} — {fix}"
            self.fail(f"The OAuth token refresh was refused ({reason}): {fix}", status=status)
        self.tokens = token_fields(body, previous_refresh=refresh_token)
        self.store(self.tokens)
        return True
