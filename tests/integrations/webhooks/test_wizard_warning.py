"""The wizard's setup step warns, without blocking, when the chosen workspace (Data Center:
instance and projects) already has an integration."""

import pytest

from integrations import services

EDIT = "integrations.edit_integration"
WARNING = "One integration per workspace is the advice; these already cover it"


@pytest.fixture
def editor_client(client, make_user):
    client.force_login(make_user("editor", EDIT))
    return client


@pytest.fixture
def cloud_connector(db):
    return services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url="http://127.0.0.1:9/2.0",
        secrets={"token": "unused"},
    )


def setup_step(client, connector, action: str, **target):
    return client.post(
        "/integrations/new/setup/",
        {"action": action, "name": "second", "connector": connector.pk, **target},
    )


def test_the_setup_step_names_the_integrations_already_on_the_workspace(
    editor_client, cloud_connector
):
    services.integration_create(
        connector=cloud_connector, name="first-on-acme", target={"workspace": "acme"}
    )
    services.integration_create(
        connector=cloud_connector, name="on-globex", target={"workspace": "globex"}
    )
    moved_on = setup_step(editor_client, cloud_connector, "next", workspace="acme")
    assert moved_on.status_code == 302  # a warning, not a refusal
    mapping = editor_client.get(moved_on["Location"]).content.decode()
    assert WARNING in mapping and "first-on-acme" in mapping

    back = editor_client.get("/integrations/new/setup/").content.decode()  # the step kept
    assert 'id="covering-warning"' in back
    assert "first-on-acme" in back and "on-globex" not in back


def test_no_warning_for_a_workspace_nobody_covers(editor_client, cloud_connector):
    services.integration_create(
        connector=cloud_connector, name="first-on-acme", target={"workspace": "acme"}
    )
    moved_on = setup_step(editor_client, cloud_connector, "next", workspace="initech")
    assert moved_on.status_code == 302
    assert WARNING not in editor_client.get(moved_on["Location"]).content.decode()
    assert WARNING not in editor_client.get("/integrations/new/setup/").content.decode()


@pytest.mark.django_db
def test_data_center_projects_overlap_when_they_share_one_or_either_takes_all(settings):
    settings.BITBUCKET_DC_ENABLED = True
    connector = services.connector_create(
        name="dc",
        provider="bitbucket_dc",
        auth_kind="personal_access_token",
        base_url="https://bitbucket.acme.test",
        secrets={"token": "unused"},
    )
    services.integration_create(connector=connector, name="pay", target={"projects": ["PAY"]})
    services.integration_create(connector=connector, name="ops", target={"projects": ["OPS"]})

    def names(target):
        covering = services.integrations_covering(connector=connector, target=target)
        return sorted(other.name for other in covering)

    assert names({"projects": ["pay", "WEB"]}) == ["pay"]
    assert names({"projects": ["WEB"]}) == []
    assert names({}) == ["ops", "pay"]
