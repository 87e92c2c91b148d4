"""A connector's proxy and timeouts through the API: the proxy URL write-only and shown with
its password masked, the timeouts validated and shown in effect."""

import pytest

from tests.integrations.api.conftest import API

PASSWORD = "pr0xy-s3cret-pw"


def create(client, **values):
    return client.post(
        f"{API}/connectors",
        {
            "name": "bb",
            "provider": "fake_token",
            "auth_kind": "api_token",
            "base_url": "https://api.example.com",
            "config": {"email": "ada@example.com", **values.pop("config", {})},
            "secrets": {"token": "t0ken-value-1234"},
            **values,
        },
        format="json",
    )


@pytest.mark.django_db
def test_the_proxy_url_is_write_only_and_shown_with_its_password_masked(
    token_provider, editor_client
):
    response = create(editor_client, proxy_url=f"http://lantern:{PASSWORD}@proxy.example:3128")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["proxy"] == "http://lantern:***@proxy.example:3128"
    assert PASSWORD not in response.content.decode()
    listed = editor_client.get(f"{API}/connectors/{body['id']}")
    assert PASSWORD not in listed.content.decode()
    cleared = editor_client.patch(
        f"{API}/connectors/{body['id']}", {"proxy_url": ""}, format="json"
    )
    assert cleared.status_code == 200, cleared.json()
    assert cleared.json()["proxy"] == ""


@pytest.mark.django_db
def test_timeouts_default_and_are_shown_in_effect(token_provider, editor_client):
    body = create(editor_client, config={"read_timeout": 45}).json()
    assert (body["connect_timeout"], body["read_timeout"]) == (10.0, 45.0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        ({"config": {"connect_timeout": 0}}, "config.connect_timeout", "more than 0"),
        ({"config": {"read_timeout": 301}}, "config.read_timeout", "at most 300"),
        ({"config": {"read_timeout": "20"}}, "config.read_timeout", "number of seconds"),
        ({"proxy_url": "socks5://proxy:1080"}, "proxy_url", "http:// or https://"),
        ({"proxy_url": f"http://u:{PASSWORD}@proxy:3128/path"}, "proxy_url", "only scheme"),
    ],
)
def test_bad_network_settings_are_refused_by_field_and_reason(
    token_provider, editor_client, values, field, reason
):
    response = create(editor_client, **values)
    assert response.status_code == 400
    text = response.content.decode()
    assert field in text and reason in text, text
    assert PASSWORD not in text


@pytest.mark.django_db
def test_the_connector_page_shows_its_proxy_masked_and_its_timeouts_in_effect(
    token_provider, editor, editor_client, client
):
    body = create(
        editor_client,
        proxy_url=f"http://lantern:{PASSWORD}@proxy.example:3128",
        config={"read_timeout": 45},
    ).json()

    client.force_login(editor)
    page = client.get(f"/integrations/connectors/{body['id']}/")

    html = page.content.decode()
    assert page.status_code == 200
    assert PASSWORD not in html
    assert "http://lantern:***@proxy.example:3128" in html
    assert ">10 s<" in html and ">45 s<" in html
