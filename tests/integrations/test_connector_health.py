"""Connector health is the connector's last outcome, over real sandbox syncs and probes: unknown
until used, up after a successful sync, down when its token is revoked (through the sandbox's
control API), up again when it is restored; a wrong project or workspace is the integration's
error and leaves a working connector up."""

import httpx
import pytest
from django.test import Client

from integrations import services
from integrations.models import Connector
from tests.integrations.bitbucket_dc import conftest as dc
from tests.integrations.bitbucket_dc.conftest import make_connector, make_integration
from tests.integrations.engine.conftest import sync, sync_ok
from tests.sandbox import fixtures
from tests.sandbox.fixtures import DC_TOKEN, SANDBOX_TOKEN

# The Data Center provider's fixtures (flag on, loopback allowed, fast retries; the sandbox)
# and the Cloud sandbox.
dc_test_settings = dc.dc_test_settings
sandbox = dc.sandbox
cloud_sandbox = fixtures.cloud_sandbox

pytestmark = pytest.mark.django_db


def control(server, path: str, body: dict) -> httpx.Response:
    context = httpx.create_ssl_context()
    context.load_verify_locations(cadata=server.ca_pem)
    return httpx.post(f"{server.url}/_sandbox{path}", json=body, verify=context)


def health(connector: Connector) -> tuple[str, str]:
    connector.refresh_from_db()
    return connector.health, connector.last_error


def test_health_goes_unknown_up_down_up_over_real_syncs(sandbox):
    server = sandbox.default
    connector = make_connector(server)
    integration = make_integration(connector)
    assert health(connector) == ("unknown", "")

    sync_ok(integration)
    assert health(connector) == ("up", "")
    first_success = connector.last_success_at
    assert first_success is not None and connector.last_checked_at >= first_success

    assert control(server, "/dc/tokens/revoke", {"token": DC_TOKEN}).json() == {"revoked": True}
    failed = sync(integration)
    assert failed.state == "failed"
    state, error = health(connector)
    assert state == "down" and error == failed.error and "Authentication failed" in error
    assert connector.last_success_at == first_success
    ready = Client().get("/readyz").json()
    (reported,) = [c for c in ready["connectors"] if c["name"] == connector.name]
    assert reported["health"] == "down" and reported["last_error"] == error

    assert control(server, "/dc/tokens", {"token": DC_TOKEN}).status_code == 201
    sync_ok(integration)
    assert health(connector) == ("up", "")
    assert connector.last_success_at > first_success


def test_twenty_successful_runs_leave_the_connector_up(sandbox):
    connector = make_connector(sandbox.default)
    integration = make_integration(connector, secondary_kinds=[])
    for _ in range(20):
        sync(integration)
    assert health(connector) == ("up", "")


def test_a_missing_project_is_the_integrations_error_not_the_connectors(sandbox):
    connector = make_connector(sandbox.default)
    sync_ok(make_integration(connector))
    wrong = make_integration(connector, name="wrong", target={"projects": ["NOPE"]})
    run = sync(wrong)
    assert run.state == "failed" and "No project NOPE" in run.error
    assert health(connector) == ("up", "")

    result = services.connector_test(connector=connector, target={"projects": ["NOPE"]})
    assert not result.ok and result.target_error and "No project NOPE" in result.message
    assert health(connector) == ("up", "")


def test_a_refused_token_in_test_connection_marks_the_connector_down(sandbox):
    connector = make_connector(sandbox.default, token="not-a-token")
    result = services.connector_test(connector=connector)
    assert not result.ok and not result.target_error
    state, error = health(connector)
    assert state == "down" and error == result.message


def test_a_wrong_workspace_in_the_wizard_test_keeps_a_working_cloud_connector_up(
    cloud_sandbox,
    settings,
):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    connector = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        secrets={"token": SANDBOX_TOKEN},
        base_url=cloud_sandbox.api_url,
    )
    workspace = next(iter(cloud_sandbox.world.workspaces))
    assert services.connector_test(connector=connector, target={"workspace": workspace}).ok
    assert health(connector) == ("up", "")
    wrong = services.connector_test(connector=connector, target={"workspace": "no-such-ws"})
    assert not wrong.ok and wrong.target_error and "no-such-ws" in wrong.message
    assert health(connector) == ("up", "")


def test_the_api_shows_the_connectors_health_and_last_success(sandbox, django_user_model):
    connector = make_connector(sandbox.default)
    sync_ok(make_integration(connector, secondary_kinds=[]))
    connector.refresh_from_db()
    client = Client()
    client.force_login(django_user_model.objects.create_user("reader"))

    shown = client.get(f"/api/integrations/connectors/{connector.pk}").json()

    assert shown["health"] == "up" and shown["last_error"] == ""
    assert shown["last_success_at"] == connector.last_success_at.isoformat().replace("+00:00", "Z")
