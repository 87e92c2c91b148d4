"""The connector admin's network settings: the proxy URL write-only (shown masked), removable,
and bad values refused on the form by field."""

import json

import pytest

from integrations.models import Connector
from tests.integrations.test_admin import admin_url, client, form_data, token_provider  # noqa: F401

PASSWORD = "pr0xy-s3cret-pw"


def add(client, **values):  # noqa: F811
    return client.post(
        admin_url(Connector, "add"),
        {
            "name": "cloud",
            "provider": "admin_token",
            "auth_kind": "workspace_access_token",
            "base_url": "https://api.example.test/2.0",
            "config": "{}",
            "ca_pem": "",
            "new_secrets": json.dumps({"token": "t0ken-value-1234"}),
            **values,
        },
    )


@pytest.mark.django_db
def test_the_proxy_url_is_write_only_masked_and_removable(token_provider, client):  # noqa: F811
    response = add(client, new_proxy_url=f"http://lantern:{PASSWORD}@proxy.example:3128")
    assert response.status_code == 302, response.context["adminform"].form.errors
    connector = Connector.objects.get()
    assert connector.proxy_url == f"http://lantern:{PASSWORD}@proxy.example:3128"
    page = client.get(admin_url(Connector, "change", connector.pk)).content.decode()
    assert PASSWORD not in page
    assert "http://lantern:***@proxy.example:3128" in page

    data = form_data(client.get(admin_url(Connector, "change", connector.pk)))
    data["base_url"] = "https://other.example.test/2.0"
    assert client.post(admin_url(Connector, "change", connector.pk), data).status_code == 302
    connector.refresh_from_db()
    assert connector.proxy_url.endswith("@proxy.example:3128")  # blank keeps it

    data["remove_proxy"] = "on"
    assert client.post(admin_url(Connector, "change", connector.pk), data).status_code == 302
    connector.refresh_from_db()
    assert connector.proxy_url == ""


@pytest.mark.django_db
def test_bad_proxy_and_timeouts_are_form_errors(token_provider, client):  # noqa: F811
    response = add(
        client,
        new_proxy_url=f"socks5://u:{PASSWORD}@proxy:1080",
        config=json.dumps({"read_timeout": 900}),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "http:// or https://" in errors["new_proxy_url"][0]
    assert "at most 300" in errors["config"][0]
    assert PASSWORD not in response.content.decode()
    assert not Connector.objects.exists()
