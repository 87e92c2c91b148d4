"""``redact`` and the secrets each credential declares: what keeps a provider's error text that
quotes the request back from carrying credentials into Lantern's messages. (The end-to-end
check, a server quoting every request back, is in tests/security/test_secrets.py.)"""

import base64
import json
import time
from urllib.parse import quote, urlencode

import httpx
import pytest

from integrations.providers.base import ProviderAuthError, ProviderError
from integrations.providers.bitbucket_cloud.client import (
    BasicCredential,
    BearerCredential,
    OAuthCredential,
    cloud_error_message,
)
from integrations.providers.bitbucket_dc.client import (
    ApplicationLinkCredential,
    PersonalAccessToken,
    TokenEndpoint,
    dc_error_message,
)
from integrations.providers.bitbucket_webhooks import ensure_hook
from integrations.providers.http import (
    ERROR_DETAIL_LIMIT,
    REDACTED,
    Credential,
    ProviderHttp,
    StaticCredential,
    redact,
)

TOKEN = "tok+en/With=Signs~1"  # characters that change when URL- or JSON-encoded
PASSWORD = "pa55-w0rd"
CLIENT_SECRET = "cl1ent-Secret"
ACCESS = "acc3ss-Token"
REFRESH = "refr3sh-Token"


def _b64(login: str, secret: str) -> str:
    return base64.b64encode(f"{login}:{secret}".encode()).decode()


def test_redact_masks_every_secret_and_keeps_the_rest():
    text = f"401 for token {TOKEN}; also refused: {PASSWORD} (twice: {PASSWORD})"
    assert redact(text, [TOKEN, PASSWORD]) == (
        f"401 for token {REDACTED}; also refused: {REDACTED} (twice: {REDACTED})"
    )


def test_redact_masks_a_header_value_whole_longest_secret_first():
    header = f"Bearer {TOKEN}"
    assert redact(f"Authorization: {header}", [TOKEN, header]) == f"Authorization: {REDACTED}"
    assert redact(f"Authorization: {header}", [header, TOKEN]) == f"Authorization: {REDACTED}"


@pytest.mark.parametrize(
    "quoted",
    [
        urlencode({"refresh_token": TOKEN}),  # a form body quoted back
        f"/hooks?token={quote(TOKEN, safe='')}",  # a query string
        json.dumps({"secret": TOKEN}),  # a JSON body (the slash escaped by some servers)
        json.dumps({"secret": TOKEN}).replace("/", "\\/"),
    ],
    ids=["form", "query", "json", "json escaped slash"],
)
def test_redact_masks_a_secret_quoted_encoded(quoted):
    masked = redact(quoted, [TOKEN])
    assert REDACTED in masked
    assert "With" not in masked and "Signs" not in masked


def test_redact_leaves_short_and_empty_values_alone():
    text = "HTTP 401: no access for abc"
    assert redact(text, ["", "abc", "a"]) == text


@pytest.mark.parametrize(
    ("credential", "sent"),
    [
        (BearerCredential(TOKEN), [TOKEN]),
        (
            BasicCredential("ada@example.com", PASSWORD),
            [PASSWORD, _b64("ada@example.com", PASSWORD)],
        ),
        (
            OAuthCredential(
                token_url="https://bitbucket.example/site/oauth2/access_token",
                client_id="lantern-app",
                client_secret=CLIENT_SECRET,
                tokens={"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": 2e9},
                store=lambda tokens: None,
                on_failure=lambda message: None,
            ),
            [CLIENT_SECRET, _b64("lantern-app", CLIENT_SECRET), ACCESS, REFRESH],
        ),
        (PersonalAccessToken(TOKEN), [TOKEN]),
        (
            ApplicationLinkCredential(
                endpoint=TokenEndpoint(instance_url="https://bitbucket.example"),
                client_id="lantern-link",
                client_secret=CLIENT_SECRET,
                tokens={"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": 2e9},
                store=lambda tokens: None,
                on_failure=lambda message: None,
            ),
            [CLIENT_SECRET, ACCESS, REFRESH],
        ),
        (StaticCredential(f"Bearer {TOKEN}"), [TOKEN]),
    ],
    ids=["cloud bearer", "cloud basic", "cloud oauth", "dc token", "dc application link", "static"],
)
def test_each_credential_declares_what_it_sends(credential: Credential, sent: list[str]):
    """Its headers, and the secrets it sends elsewhere (the OAuth token endpoint), come out of
    ``redact`` with nothing of them left, however they are quoted."""
    quoted = f"{credential.headers()} {json.dumps(sent)} {urlencode({'s': sent}, doseq=True)}"
    masked = redact(quoted, credential.secrets())
    assert [secret for secret in sent if secret[:4] in masked] == []
    assert REDACTED in masked


def test_a_token_renewed_after_the_credential_was_made_is_declared():
    credential = OAuthCredential(
        token_url="https://bitbucket.example/site/oauth2/access_token",
        client_id="lantern-app",
        client_secret=CLIENT_SECRET,
        tokens={"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": 2e9},
        store=lambda tokens: None,
        on_failure=lambda message: None,
    )
    credential.tokens = {"access_token": "n3w-Access", "expires_at": time.time() + 3600}
    assert "n3w-Access" in credential.secrets()


def _response(status: int, **body) -> httpx.Response:
    return httpx.Response(status, **body, request=httpx.Request("GET", "https://x.example/2.0/r"))


@pytest.mark.parametrize(
    ("error_message", "body"),
    [
        (cloud_error_message, {"json": {"type": "error", "error": {"message": f"bad {TOKEN}"}}}),
        (dc_error_message, {"json": {"errors": [{"message": f"bad {TOKEN}"}]}}),
        (None, {"text": f"bad {TOKEN}"}),
    ],
    ids=["cloud", "dc", "plain text"],
)
def test_provider_errors_name_the_status_and_text_without_any_pooled_secret(error_message, body):
    http = ProviderHttp(
        base_url="https://x.example/2.0",
        credentials=[BearerCredential("0ther-Token"), BearerCredential(TOKEN)],
        error_message=error_message,
    )
    error = http._error(_response(401, **body))
    assert isinstance(error, ProviderAuthError) and error.status == 401
    assert error.message == f"Authentication failed: bad {REDACTED}"
    assert str(error) == error.message


def test_a_long_error_is_shortened_after_redaction_so_no_part_of_a_secret_survives():
    """The cut falls inside the secret: shortening first would keep its first characters."""
    text = "x" * (ERROR_DETAIL_LIMIT - 8) + TOKEN + "y" * 100
    http = ProviderHttp(base_url="https://x.example/2.0", credentials=[BearerCredential(TOKEN)])
    error = http._error(_response(500, text=text))
    assert error.message.startswith("HTTP 500: xxx")
    assert TOKEN[:4] not in error.message
    assert len(error.message) <= len("HTTP 500: ") + ERROR_DETAIL_LIMIT


class _RefusingHooks:
    """The part of ProviderHttp that ``ensure_hook`` uses: no hooks yet, and a write refused
    with the request body quoted in the error (as the echo server of the security suite does)."""

    def __init__(self):
        self.written = []

    def request(self, method, path, *, json=None, not_found_ok=False):  # noqa: A002
        self.written.append((method, path))
        raise ProviderError(f"HTTP 400: {method} {path} {json}", status=400)


def test_a_refused_hook_write_names_the_hook_but_not_its_secret():
    http = _RefusingHooks()
    body = {"url": "https://lantern.example/hooks/1", "secret": "h00k-Secret", "active": True}
    with pytest.raises(ProviderError) as refused:
        ensure_hook(http, "workspaces/acme/hooks", [], body, id_key="uuid", secret="h00k-Secret")
    assert http.written == [("POST", "workspaces/acme/hooks")]
    error = refused.value
    assert error.status == 400 and type(error) is ProviderError
    assert "HTTP 400: POST workspaces/acme/hooks" in error.message
    assert "https://lantern.example/hooks/1" in error.message
    assert f"'secret': '{REDACTED}'" in error.message
    assert "h00k" not in str(error) and "h00k" not in repr(error)
