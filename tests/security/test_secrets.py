"""Secrets stay secret: connector credentials of every kind (Cloud access tokens, API tokens, app
passwords, OAuth consumer secrets with their refresh and access tokens; Data Center HTTP access
tokens and application-link secrets) and integrations' webhook secrets.

Each secret is a distinctive value, looked for (also as the base64 of a Basic ``login:secret``)
in: every table of the database, read with a cursor (sessions decoded); every API response,
admin page and UI page; every log record of failing syncs, probes and webhook registrations at
DEBUG for all loggers (SQL included), formatted as the JSON and plain log lines; the errors
recorded on runs and connectors; and the error answers to refused writes.
"""

import base64
import dataclasses
import io
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib import admin
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from integrations import services
from integrations.crypto import decrypt_json
from integrations.engine.sync import integration_sync
from integrations.models import Connector, Integration, WriteBackBatch
from portal.logging import JsonFormatter, PlainFormatter
from sandbox.tls import sandbox_tls
from tests.integrations.bitbucket_cloud.conftest import cloud_test_settings  # noqa: F401
from tests.integrations.bitbucket_dc.conftest import dc_test_settings  # noqa: F401
from tests.portal.test_bitbucket_login import CLIENT_SECRET, _sign_in, bitbucket  # noqa: F401
from tests.sandbox.fixtures import (
    SANDBOX_SCOPES,
    cloud_world_factory,
    dc_world_factory,
    make_dc_sandbox,  # noqa: F401
)
from tests.security.conftest import EDIT, api_operations, ui_routes

# (Both *_test_settings fixtures are autouse here: loopback allowed, Data Center enabled, fast
# retries, fresh request budgets.)

WORKSPACE = "acme"


@dataclasses.dataclass(frozen=True)
class Secret:
    value: str
    login: str = ""  # sent as HTTP Basic ``login:value``

    def forms(self) -> list[str]:
        forms = [self.value]
        if self.login:
            forms.append(base64.b64encode(f"{self.login}:{self.value}".encode()).decode())
        return forms


EMAIL, USERNAME, CLIENT_ID, LINK_ID = "ada@example.com", "ada", "lantern-app", "lantern-link"
S = {
    "workspace_token": Secret("wsTok1-Qx7RkP2mVn8"),
    "pooled_token": Secret("wsTok2-Lb4TzW9cHd3"),
    "repository_token": Secret("repoTok-Fj6NsY1qKe5"),
    "api_token": Secret("apiTok-Gm3VwR8xZa2", login=EMAIL),
    "app_password": Secret("appPw-Hn5PqT7yBc4", login=USERNAME),
    "client_secret": Secret("oaSec-Jr8LdX2uMf6", login=CLIENT_ID),
    "refresh_token": Secret("oaRef-Kt1CeZ6wNg9"),
    "access_token": Secret("oaAcc-Mv4BfQ3sPh7"),
    "dc_token": Secret("dcTok-Nw7GhS5rTj1"),
    "dc_client_secret": Secret("dcSec-Px2JkU8vWk3"),
    "dc_refresh_token": Secret("dcRef-Ry9LmV4xYm5"),
    "dc_access_token": Secret("dcAcc-Sz6NpW1zAn8"),
    "webhook": Secret("whSec-Tb3QrX7bCp2"),
    "form_secret": Secret("formTok-Uc5StY2dDq4"),
    "api_secret": Secret("postTok-Vd8UvZ6fEr7"),
    "admin_secret": Secret("adminTok-We1WxA9hFs3"),
}
FORMS = {form: name for name, secret in S.items() for form in secret.forms()}


def leaks(texts: Iterable) -> list[tuple[str, str]]:
    """(secret name, the text around it) for every secret found in ``texts``."""
    found = []
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for form, name in FORMS.items():
            for match in re.finditer(re.escape(form), str(text)):
                found.append((name, str(text)[max(0, match.start() - 80) : match.end() + 40]))
    return found


def database_contents() -> list[str]:
    """Every row of every table, as read by a cursor, and every session decoded."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                rows.append(repr([bytes(v) if isinstance(v, memoryview) else v for v in row]))
        cursor.execute("SELECT session_data FROM django_session")
        rows.extend(repr(SessionStore().decode(data)) for (data,) in cursor.fetchall())
    return rows


def log_lines(records: list[logging.LogRecord]) -> list[str]:
    """Each record as the JSON and the plain formatter write it, and everything it carries."""
    plain = PlainFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    lines = []
    for record in records:
        lines += [JsonFormatter().format(record), plain.format(record), repr(record.__dict__)]
    return lines


@pytest.fixture
def all_logs(caplog):
    """Every logger at DEBUG (SQL included) into ``caplog``."""
    for name in [None, *list(logging.root.manager.loggerDict)]:
        caplog.set_level(logging.DEBUG, logger=name)
    with CaptureQueriesContext(connection) as queries:
        yield caplog, queries


def _connector(name, provider, auth_kind, secrets, *, base_url, config=None, ca_pem=""):
    return services.connector_create(
        name=name,
        provider=provider,
        auth_kind=auth_kind,
        secrets=secrets,
        base_url=base_url,
        config=config or {},
        ca_pem=ca_pem,
    )


def _integration(connector: Connector) -> Integration:
    target = {"workspace": WORKSPACE} if connector.provider == "bitbucket_cloud" else {}
    integration = services.integration_create(
        connector=connector, name=connector.name, target=target, secondary_kinds=[]
    )
    integration.webhook_secret = S["webhook"].value
    integration.save()
    return integration


def connectors_of_every_kind(cloud_url: str, dc_url: str, dc_ca: str) -> list[Connector]:
    cloud, dc = "bitbucket_cloud", "bitbucket_dc"
    tokens = [S["workspace_token"].value, S["pooled_token"].value]
    oauth = {key: S[key].value for key in ("client_secret", "refresh_token", "access_token")}
    dc_oauth = {
        "client_secret": S["dc_client_secret"].value,
        "refresh_token": S["dc_refresh_token"].value,
        "access_token": S["dc_access_token"].value,
    }
    return [
        _connector(
            "c-wat", cloud, "workspace_access_token", {"tokens": tokens}, base_url=cloud_url
        ),
        _connector(
            "c-rat",
            cloud,
            "repository_access_token",
            {"token": S["repository_token"].value},
            base_url=cloud_url,
        ),
        _connector(
            "c-api",
            cloud,
            "api_token",
            {"token": S["api_token"].value},
            base_url=cloud_url,
            config={"email": EMAIL},
        ),
        _connector(
            "c-app",
            cloud,
            "app_password",
            {"app_password": S["app_password"].value},
            base_url=cloud_url,
            config={"username": USERNAME},
        ),
        _connector(
            "c-oauth",
            cloud,
            "oauth_consumer",
            oauth,
            base_url=cloud_url,
            config={"client_id": CLIENT_ID},
        ),
        _connector(
            "d-pat",
            dc,
            "personal_access_token",
            {"token": S["dc_token"].value},
            base_url=dc_url,
            ca_pem=dc_ca,
        ),
        _connector(
            "d-oauth",
            dc,
            "oauth_application_link",
            dc_oauth,
            base_url=dc_url,
            ca_pem=dc_ca,
            config={"client_id": LINK_ID},
        ),
    ]


@pytest.fixture
def every_kind(cloud_sandbox, make_dc_sandbox) -> list[Integration]:  # noqa: F811
    """An integration on a connector of each kind, each with its webhook secret."""
    dc = make_dc_sandbox(dc_world_factory(repos=2, prs_per_repo=0, commits_per_repo=0))
    connectors = connectors_of_every_kind(cloud_sandbox.api_url, dc.url, dc.ca_pem)
    return [_integration(connector) for connector in connectors]


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw-unused-123")


# -- at rest -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_secrets_are_stored_only_encrypted(every_kind, superuser, editor_client):
    """Connectors written by the services, the API, the admin and the wizard; the raw columns
    hold Fernet tokens that decrypt to the secrets, and no table holds a secret in clear."""
    api = editor_client.post(
        "/api/integrations/connectors",
        {
            "name": "by-api",
            "provider": "bitbucket_cloud",
            "auth_kind": "workspace_access_token",
            "secrets": {"token": S["api_secret"].value},
        },
        format="json",
    )
    assert api.status_code == 201, api.content
    browser = Client()
    browser.force_login(superuser)
    added = browser.post(
        reverse("admin:integrations_connector_add"),
        {
            "name": "by-admin",
            "provider": "bitbucket_cloud",
            "auth_kind": "workspace_access_token",
            "base_url": "",
            "config": "{}",
            "ca_pem": "",
            "new_secrets": json.dumps({"token": S["admin_secret"].value}),
        },
    )
    assert added.status_code == 302, added.content
    wizard = browser.post(
        "/integrations/new/setup/",
        {
            "action": "create_connector",
            "name": "acme",
            "connector-name": "by-wizard",
            "connector-provider": "bitbucket_cloud",
            "connector-auth_kind": "workspace_access_token",
            "connector-secret": S["form_secret"].value,
        },
    )
    assert wizard.status_code == 302
    # The wizard's next steps carry on from what the session kept.
    assert browser.get("/integrations/new/setup/").status_code == 200

    with connection.cursor() as cursor:
        cursor.execute("SELECT name, secrets_encrypted FROM integrations_connector")
        stored = dict(cursor.fetchall())
        cursor.execute("SELECT webhook_secret_encrypted FROM integrations_integration")
        webhook_columns = [value for (value,) in cursor.fetchall()]
    assert len(stored) == 10
    for name, column in stored.items():
        assert column.startswith("gAAAAA"), name  # a Fernet token
        assert decrypt_json(column) == Connector.objects.get(name=name).secrets
    assert decrypt_json(stored["by-wizard"]) == {"token": S["form_secret"].value}
    assert decrypt_json(stored["c-oauth"])["refresh_token"] == S["refresh_token"].value
    assert webhook_columns and all(
        decrypt_json(value) == {"secret": S["webhook"].value} for value in webhook_columns
    )
    assert leaks(database_contents()) == []


# -- shown nowhere -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_api_response_shows_a_secret(every_kind, path_objects, superuser):
    client = APIClient()
    client.force_authenticate(superuser)
    bodies = []
    for integration in every_kind:
        WriteBackBatch.objects.create(integration=integration, mode="pull_request")
        objects = dataclasses.replace(
            path_objects, connector=integration.connector, integration=integration
        )
        for operation in api_operations():
            if operation.method == "GET":
                response = client.get(objects.api_path(operation), {"facet": "kind"})
                assert response.status_code == 200, (operation, response.content)
                bodies.append(response.content)
    assert any(b'"has_secrets":true' in body for body in bodies)
    assert leaks(bodies) == []


@pytest.mark.django_db
def test_no_admin_page_shows_a_secret(every_kind, superuser):
    client = Client()
    client.force_login(superuser)
    pages = [client.get(reverse("admin:index"))]
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        pages.append(client.get(reverse("admin:{}_{}_changelist".format(*info))))
        if model_admin.has_add_permission(pages[-1].wsgi_request):
            pages.append(client.get(reverse("admin:{}_{}_add".format(*info))))
        for pk in model.objects.values_list("pk", flat=True)[:10]:
            pages.append(client.get(reverse("admin:{}_{}_change".format(*info), args=[pk])))
    assert all(page.status_code == 200 for page in pages)
    assert len(pages) > 2 * len(admin.site._registry)
    assert leaks(page.content for page in pages) == []


@pytest.mark.django_db
def test_no_ui_page_shows_a_secret(every_kind, path_objects, superuser):
    client = Client()
    client.force_login(superuser)
    pages = []
    for integration in every_kind:
        objects = dataclasses.replace(
            path_objects, connector=integration.connector, integration=integration
        )
        for route in ui_routes():
            response = client.get(objects.ui_url(route), follow=True)
            if response.status_code != 405:
                assert response.status_code == 200, route
                pages.append(response.content)
    webhooks = client.get(f"/integrations/{every_kind[0].pk}/webhooks/").content.decode()
    assert every_kind[0].webhook_url in webhooks
    assert leaks(pages) == []


@pytest.mark.django_db
def test_refused_writes_do_not_echo_a_secret(every_kind, editor_client, superuser):
    secret = S["api_secret"].value
    base = {"name": "x", "provider": "bitbucket_cloud", "auth_kind": "workspace_access_token"}
    refused = [
        editor_client.post(
            "/api/integrations/connectors", {**base, "secrets": {"bogus": secret}}, format="json"
        ),
        editor_client.post(
            "/api/integrations/connectors",
            {**base, "auth_kind": "personal_access_token", "secrets": {"token": secret}},
            format="json",
        ),
        editor_client.post(
            "/api/integrations/connectors",
            {**base, "name": "c-wat", "secrets": {"token": secret}},
            format="json",
        ),
        editor_client.post(
            "/api/integrations/connectors", {**base, "secrets": secret}, format="json"
        ),
        editor_client.patch(
            f"/api/integrations/connectors/{every_kind[0].connector.pk}",
            {"auth_kind": "bogus", "secrets": {"token": secret}},
            format="json",
        ),
    ]
    assert {response.status_code for response in refused} == {400}
    browser = Client()
    browser.force_login(superuser)
    form = {
        "name": "x",
        "provider": "bitbucket_cloud",
        "auth_kind": "workspace_access_token",
        "config": "{}",
    }
    for new_secrets in (f'{{"token": "{secret}"', json.dumps({"nope": secret})):
        page = browser.post(
            reverse("admin:integrations_connector_add"), {**form, "new_secrets": new_secrets}
        )
        assert page.status_code == 200 and page.context["adminform"].form.errors
        refused.append(page)
    wizard = browser.post(
        "/integrations/new/setup/",
        {
            "action": "create_connector",
            "connector-name": "c-wat",  # taken
            "connector-provider": "bitbucket_cloud",
            "connector-auth_kind": "workspace_access_token",
            "connector-secret": secret,
        },
    )
    assert wizard.status_code == 200
    refused.append(wizard)
    assert leaks(response.content for response in refused) == []
    assert leaks(database_contents()) == []


# -- failures: runs, probes, registrations, logs --------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cloud(start_cloud, **faults):
    server = start_cloud(cloud_world_factory(repos=2, prs_per_repo=0, commits_per_repo=0))
    if faults:
        server.api.faults.configure(seed=5, **faults)
    return server


def _dc(start_dc, **faults):
    server = start_dc(dc_world_factory(repos=2, prs_per_repo=0, commits_per_repo=0))
    if faults:
        server.api.faults.configure(seed=5, **faults)
    return server


def _token_refused(start_cloud, start_dc) -> Connector:
    server = _cloud(start_cloud)
    secrets = {"tokens": [S["workspace_token"].value, S["pooled_token"].value]}
    return _connector("c", "bitbucket_cloud", "workspace_access_token", secrets, **_at(server))


def _server_errors(start_cloud, start_dc) -> Connector:
    server = _cloud(start_cloud, rate_500=1.0)
    token = S["repository_token"].value
    server.world.credentials.add_access_token(token, workspace=WORKSPACE, scopes=SANDBOX_SCOPES)
    return _connector(
        "c", "bitbucket_cloud", "repository_access_token", {"token": token}, **_at(server)
    )


def _api_token_refused(start_cloud, start_dc) -> Connector:
    server = _cloud(start_cloud)
    secrets, config = {"token": S["api_token"].value}, {"email": EMAIL}
    return _connector("c", "bitbucket_cloud", "api_token", secrets, config=config, **_at(server))


def _app_password_retired(start_cloud, start_dc) -> Connector:
    server = _cloud(start_cloud)
    member = server.world.account(server.world.workspaces[WORKSPACE].members[0])
    server.world.credentials.add_app_password(
        username=member.nickname, password=S["app_password"].value
    )
    secrets, config = {"app_password": S["app_password"].value}, {"username": member.nickname}
    return _connector("c", "bitbucket_cloud", "app_password", secrets, config=config, **_at(server))


def _oauth_refresh_refused(start_cloud, start_dc) -> Connector:
    server = _cloud(start_cloud)
    server.world.credentials.add_oauth_consumer(
        client_id=CLIENT_ID, secret=S["client_secret"].value, callback_url="http://localhost:9/"
    )
    secrets = {key: S[key].value for key in ("client_secret", "refresh_token", "access_token")}
    config = {"client_id": CLIENT_ID}
    return _connector(
        "c", "bitbucket_cloud", "oauth_consumer", secrets, config=config, **_at(server)
    )


def _connection_refused(start_cloud, start_dc) -> Connector:
    secrets = {"token": S["workspace_token"].value}
    url = f"http://127.0.0.1:{_closed_port()}/2.0"
    return _connector("c", "bitbucket_cloud", "workspace_access_token", secrets, base_url=url)


def _dc_untrusted_certificate(start_cloud, start_dc) -> Connector:
    server = _dc(start_dc)
    secrets = {"token": S["dc_token"].value}
    return _connector("d", "bitbucket_dc", "personal_access_token", secrets, base_url=server.url)


def _dc_token_refused(start_cloud, start_dc) -> Connector:
    server = _dc(start_dc)
    secrets = {"token": S["dc_token"].value}
    return _connector("d", "bitbucket_dc", "personal_access_token", secrets, **_at(server))


def _dc_unavailable(start_cloud, start_dc) -> Connector:
    server = _dc(start_dc, rate_503=1.0)
    server.world.credentials.dc.add_token(S["dc_token"].value)
    secrets = {"token": S["dc_token"].value}
    return _connector("d", "bitbucket_dc", "personal_access_token", secrets, **_at(server))


def _dc_link_refresh_refused(start_cloud, start_dc) -> Connector:
    server = _dc(start_dc)
    server.world.credentials.dc.add_client(
        client_id=LINK_ID, secret=S["dc_client_secret"].value, redirect_uri="http://localhost:9/"
    )
    secrets = {
        "client_secret": S["dc_client_secret"].value,
        "refresh_token": S["dc_refresh_token"].value,
        "access_token": S["dc_access_token"].value,
    }
    config = {"client_id": LINK_ID}
    return _connector(
        "d", "bitbucket_dc", "oauth_application_link", secrets, config=config, **_at(server)
    )


def _at(server) -> dict:
    if server.kind == "dc":
        return {"base_url": server.url, "ca_pem": server.ca_pem}
    return {"base_url": server.api_url}


FAILURES: dict[str, Callable] = {
    "cloud token refused": _token_refused,
    "cloud 500 on every request": _server_errors,
    "cloud API token refused": _api_token_refused,
    "cloud app password retired": _app_password_retired,
    "cloud OAuth refresh refused": _oauth_refresh_refused,
    "connection refused": _connection_refused,
    "DC certificate not trusted": _dc_untrusted_certificate,
    "DC token refused": _dc_token_refused,
    "DC 503 on every request": _dc_unavailable,
    "DC application link refresh refused": _dc_link_refresh_refused,
}


@pytest.fixture
def editor_client(make_user, bearer_client) -> APIClient:
    return bearer_client(make_user("editor", EDIT))


@pytest.mark.django_db
@pytest.mark.parametrize("failure", FAILURES)
def test_failures_record_and_log_no_secret(
    failure,
    make_cloud_sandbox,
    make_dc_sandbox,  # noqa: F811
    editor_client,
    superuser,
    all_logs,
    django_capture_on_commit_callbacks,
    settings,
):
    caplog, queries = all_logs
    integration = _integration(FAILURES[failure](make_cloud_sandbox, make_dc_sandbox))
    with django_capture_on_commit_callbacks(execute=True):
        queued = editor_client.post(f"/api/integrations/{integration.pk}/sync")
    assert queued.status_code == 202
    run = integration.runs.get()
    assert run.state == "failed" and run.error, run.message
    probe = services.connector_test(connector=integration.connector, target=integration.target)
    assert not probe.ok
    services.integration_webhook_register(integration=integration)
    out = io.StringIO()
    with pytest.raises(CommandError) as check:
        call_command("check_integration", integration.name, stdout=out, stderr=out)
    command = [out.getvalue(), str(check.value)]
    integration.refresh_from_db()
    connector = Connector.objects.get(pk=integration.connector_id)
    assert connector.health == "down" and connector.last_error
    assert integration.webhook_registration in ("manual", "failed")
    browser = Client()
    browser.force_login(superuser)
    shown = [
        editor_client.get(f"/api/integrations/{integration.pk}/runs").content,
        editor_client.get(f"/api/integrations/connectors/{connector.pk}").content,
        editor_client.get(f"/api/integrations/{integration.pk}").content,
        browser.get(f"/integrations/{integration.pk}/runs/").content,
        browser.get(f"/integrations/{integration.pk}/webhooks/").content,
        browser.get(reverse("admin:integrations_connector_change", args=[connector.pk])).content,
        browser.get(reverse("admin:integrations_syncrun_change", args=[run.pk])).content,
    ]
    assert json.loads(shown[0])["results"][0]["error"] == run.error
    tested = browser.post(  # the wizard's "Test connection"
        "/integrations/new/setup/",
        {"action": "test", "name": "probe", "connector": connector.pk, "workspace": WORKSPACE},
    )
    assert b"Connection failed" in tested.content
    shown.append(tested.content)
    records = caplog.records
    assert any(r.name == "integrations.engine.sync" for r in records)
    assert any(r.name == "django.db.backends" for r in records)  # SQL is in the logs
    recorded = [
        run.error,
        run.message,
        probe.message,
        repr(probe.details),
        connector.last_error,
        integration.webhook_registration_detail,
        *command,
    ]
    assert leaks(recorded) == []
    assert leaks(shown) == []
    assert leaks(log_lines(records)) == []
    assert leaks(query["sql"] for query in queries.captured_queries) == []
    assert leaks(database_contents()) == []


@pytest.mark.django_db
def test_signing_in_with_bitbucket_stores_and_logs_no_token(bitbucket, all_logs):  # noqa: F811
    """Sign in with Bitbucket: the consumer secret lives in settings, the tokens the sign-in
    obtains are used once and kept nowhere."""
    caplog, queries = all_logs
    assert _sign_in(Client(), bitbucket).status_code == 302
    issued = bitbucket.world.credentials
    secrets = [CLIENT_SECRET, *issued.oauth_access, *issued.oauth_refresh]
    assert len(secrets) == 3
    texts = [
        *database_contents(),
        *log_lines(caplog.records),
        *(query["sql"] for query in queries.captured_queries),
    ]
    assert any("socialaccount" in text for text in texts)  # the sign-in was recorded
    assert [secret for secret in secrets if any(secret in text for text in texts)] == []


# -- a server that quotes the request back ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Echo:
    """How the server answers: ``status`` with the request (headers and body) quoted in the
    ``shape`` of error the client parses; with ``reads_ok``, GETs succeed with an empty page
    and only writes (webhook registration) fail."""

    status: int
    shape: str  # cloud | dc | oauth | text
    reads_ok: bool = False


class _EchoHandler(BaseHTTPRequestHandler):
    echo: Echo

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if self.echo.reads_ok and self.command == "GET":
            status, payload = 200, {"values": [], "size": 0, "isLastPage": True}
        else:
            said = f"{self.command} {self.path} {dict(self.headers)} {body}"
            status, payload = (
                self.echo.status,
                {
                    "cloud": {"type": "error", "error": {"message": said, "detail": said}},
                    "dc": {"errors": [{"message": said}]},
                    "oauth": {"error": "invalid_grant", "error_description": said},
                    "text": said,
                }[self.echo.shape],
            )
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/plain" if isinstance(payload, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(text.encode())))
        self.end_headers()
        self.wfile.write(text.encode())

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

    def log_message(self, format, *args) -> None:  # noqa: A002 (the stdlib's signature)
        pass


@pytest.fixture
def echo_server():
    """``echo_server(echo, tls=False)`` → the base URL of a server answering as ``echo`` says
    (HTTPS with its own CA, returned too, for Data Center)."""
    servers = []

    def start(echo: Echo, *, tls: bool = False) -> tuple[str, str]:
        server = ThreadingHTTPServer(
            ("127.0.0.1", 0), type("Echo", (_EchoHandler,), {"echo": echo})
        )
        ca_pem = ""
        if tls:
            certificates = sandbox_tls()
            server.socket = certificates.server_context().wrap_socket(
                server.socket, server_side=True
            )
            ca_pem = certificates.ca_pem
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append(server)
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}", ca_pem

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# What some recorded message still says of the quote: the status, the provider's text, and the
# secrets it quoted as [redacted].
AUTH_HEADER = "'Authorization': '[redacted]'"
ECHOES = [
    pytest.param(
        "c-wat",
        Echo(401, "cloud"),
        ("Authentication failed: GET /2.0/repositories/acme", AUTH_HEADER),
        id="cloud API error",
    ),
    pytest.param(
        "c-api",
        Echo(401, "text"),
        ("Authentication failed: GET /2.0/repositories/acme", AUTH_HEADER),
        id="cloud API error, text",
    ),
    pytest.param(
        "c-app",
        Echo(403, "cloud"),
        ("Permission denied: GET /2.0/repositories/acme", AUTH_HEADER),
        id="cloud API 403",
    ),
    pytest.param(
        "c-oauth",
        Echo(400, "oauth"),
        (
            "The OAuth token refresh was refused (POST /site/oauth2/access_token",
            AUTH_HEADER,
            "refresh_token=[redacted]",
        ),
        id="cloud token refresh",
    ),
    pytest.param(
        "c-wat",
        Echo(400, "cloud", reads_ok=True),
        ("HTTP 400: POST /2.0/workspaces/acme/hooks", AUTH_HEADER, '"secret":"[redacted]"'),
        id="cloud hook",
    ),
    pytest.param(
        "d-pat",
        Echo(401, "dc"),
        ("Authentication failed: GET /rest/api/1.0/repos", AUTH_HEADER),
        id="DC API error",
    ),
    pytest.param(
        "d-oauth",
        Echo(400, "oauth"),
        (
            "The OAuth token refresh was refused (POST /rest/oauth2/latest/token",
            "refresh_token=[redacted]",
            "client_secret=[redacted]",
        ),
        id="DC token refresh",
    ),
    pytest.param("c-wat", Echo(500, "text"), ("kept failing (HTTP 500)",), id="cloud 500, retried"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "echo", "says"), ECHOES)
def test_a_server_quoting_the_request_back_is_not_copied(kind, echo, says, echo_server, all_logs):
    """The provider's error text is kept in the messages, minus every secret it quoted."""
    caplog, _ = all_logs
    url, ca_pem = echo_server(echo, tls=kind.startswith("d-"))
    base_url = f"{url}/2.0" if kind.startswith("c-") else url
    dc_url = url if kind.startswith("d-") else "https://bitbucket.example.test"  # https only
    connectors = connectors_of_every_kind(base_url, dc_url, ca_pem)
    (connector,) = [c for c in connectors if c.name == kind]
    Connector.objects.exclude(pk=connector.pk).delete()
    integration = _integration(connector)
    integration_sync(integration_id=integration.pk, trigger="manual")
    probe = services.connector_test(connector=connector, target=integration.target)
    services.integration_webhook_register(integration=integration)
    integration.refresh_from_db()
    connector.refresh_from_db()
    run = integration.runs.get()
    recorded = [
        run.error,
        probe.message,
        connector.last_error,
        integration.webhook_registration_detail,
    ]
    assert integration.webhook_registration in ("manual", "failed")  # the server was reached
    assert leaks(recorded) == []
    assert any(all(fragment in text for fragment in says) for text in recorded), recorded
    assert leaks(log_lines(caplog.records)) == []
