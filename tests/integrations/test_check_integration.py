import io

import pytest
from django.core.management import CommandError, call_command

from integrations import services
from integrations.models import Connector


def cloud_integration(server, token: str):
    connector = services.connector_create(
        name=f"cloud-{token}",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=server.api_url,
        secrets={"token": token},
    )
    return services.integration_create(
        connector=connector, name=f"acme-{token}", target={"workspace": "acme"}
    )


@pytest.mark.django_db
def test_check_integration_reports_ok_and_marks_the_connector_up(settings, cloud_sandbox):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    integration = cloud_integration(cloud_sandbox, "sandbox-token")
    out = io.StringIO()
    call_command("check_integration", integration.name, stdout=out)
    assert "OK:" in out.getvalue()
    assert integration.webhook_url in out.getvalue()
    assert Connector.objects.get(pk=integration.connector_id).health == "up"


@pytest.mark.django_db
def test_check_integration_explains_a_refused_token_and_marks_the_connector_down(
    settings, cloud_sandbox
):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    integration = cloud_integration(cloud_sandbox, "wrong-token")
    with pytest.raises(CommandError, match="Probe failed: .*refused"):
        call_command("check_integration", integration.name, stdout=io.StringIO())
    connector = Connector.objects.get(pk=integration.connector_id)
    assert connector.health == "down" and connector.last_error


@pytest.mark.django_db
def test_check_integration_of_an_unknown_name_fails():
    with pytest.raises(CommandError, match="No integration named 'nope'"):
        call_command("check_integration", "nope")
