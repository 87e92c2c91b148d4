"""What the Cloud and Data Center credentials share: the two error kinds, OAuth grants and
the small helpers both token endpoints and both dumps use."""

import base64
import binascii
import secrets
from dataclasses import dataclass
from operator import attrgetter
from urllib.parse import urlencode


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


@dataclass
class OAuthGrant:
    consumer: str  # client_id
    account: str
    scopes: tuple[str, ...]
    expires_at: float = 0.0
    revoked: bool = False
    redirect_uri: str = ""
    code_challenge: str = ""  # PKCE (Data Center application links)


def decode_basic(value: str, error: AuthError) -> tuple[str, str]:
    """``login:secret`` from a Basic credential; ``error`` when it does not decode."""
    try:
        raw = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise error from None
    login, _, secret = raw.partition(":")
    return login, secret


def authenticated_client(registry: dict, client_id: str, client_secret: str, message: str):
    """The OAuth client registered as ``client_id`` if ``client_secret`` is its secret."""
    client = registry.get(client_id)
    if client is None or not secrets.compare_digest(client.secret, client_secret):
        raise OAuthError("invalid_client", message, status=401)
    return client


def refused_response_type(response_type: str) -> dict[str, str]:
    return {
        "error": "unsupported_response_type",
        "error_description": f"Unsupported response_type {response_type!r}",
    }


def redirect_with(target: str, params: dict[str, str], state: str | None) -> str:
    """``target`` with the authorization result (and ``state``) appended to its query."""
    if state is not None:
        params["state"] = state
    separator = "&" if "?" in target else "?"
    return f"{target}{separator}{urlencode(params)}"


def expire_grants(grants: dict[str, OAuthGrant], now: float) -> int:
    for grant in grants.values():
        grant.expires_at = min(grant.expires_at, now)
    return len(grants)


BY_TOKEN = attrgetter("token")

BY_CLIENT_ID = attrgetter("client_id")


def restore(registry: dict, records: list[dict], cls, key, *, scopes: bool = True) -> None:
    """Dumped records back into ``registry`` as ``cls`` instances keyed by ``key(item)``."""
    for record in records:
        item = cls(**{**record, "scopes": tuple(record["scopes"])} if scopes else record)
        registry[key(item)] = item
