"""``apply_config`` and a connector's network settings: its own proxy (a password only from the
environment, stored encrypted, never echoed) and its timeouts, checked like every other path."""

import textwrap
from pathlib import Path

import pytest

from integrations.config import ConfigError, config_apply, config_load
from integrations.models import Connector

pytestmark = pytest.mark.django_db

CONNECTOR = """
connectors:
  - name: fake-proxied
    provider: fake
    auth: {{kind: none}}
    config: {{world: w1{config}}}
    {proxy}
"""


@pytest.fixture
def write(tmp_path: Path):
    def write(*, proxy: str = "", config: str = "") -> Path:
        path = tmp_path / "lantern.yaml"
        text = CONNECTOR.format(proxy=proxy, config=config)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def test_a_proxy_without_credentials_may_be_written_in_the_file(fake_provider, write):
    summary = config_apply(config_load(write(proxy="proxy_url: http://proxy.example:3128")))

    connector = Connector.objects.get(name="fake-proxied")
    assert connector.proxy_url == "http://proxy.example:3128"
    assert "proxy.example" not in connector.proxy_url_encrypted
    assert [(o.kind, o.name, o.action) for o in summary.outcomes] == [
        ("connector", "fake-proxied", "created")
    ]


def test_a_proxy_password_written_in_the_file_is_refused_and_nothing_is_stored(
    fake_provider, write
):
    path = write(proxy="proxy_url: http://lantern:hunter22@proxy.example:3128")

    with pytest.raises(ConfigError) as caught:
        config_apply(config_load(path))

    message = str(caught.value)
    assert "proxy_url" in message and "${" in message
    assert "hunter22" not in message
    assert not Connector.objects.exists()


def test_a_proxy_password_from_the_environment_is_stored_encrypted_and_never_echoed(
    fake_provider, write, monkeypatch
):
    monkeypatch.setenv("LANTERN_TEST_PROXY", "http://lantern:hunter22@proxy.example:3128")
    path = write(proxy='proxy_url: "${LANTERN_TEST_PROXY}"')

    created = config_apply(config_load(path))
    again = config_apply(config_load(path))

    connector = Connector.objects.get(name="fake-proxied")
    assert connector.proxy_url == "http://lantern:hunter22@proxy.example:3128"
    assert "hunter22" not in connector.proxy_url_encrypted
    assert "hunter22" not in str(created) + str(again)
    assert [o.action for o in again.outcomes] == ["unchanged"]


def test_a_changed_proxy_updates_the_connector_naming_only_the_field(fake_provider, write):
    config_apply(config_load(write(proxy="proxy_url: http://proxy.example:3128")))

    summary = config_apply(config_load(write(proxy="proxy_url: http://other.example:8080")))

    assert Connector.objects.get(name="fake-proxied").proxy_url == "http://other.example:8080"
    (outcome,) = summary.outcomes
    assert (outcome.action, outcome.fields) == ("updated", ("proxy_url",))


@pytest.mark.parametrize(
    ("proxy", "config", "field"),
    [
        ("proxy_url: ftp://proxy.example:21", "", "proxy_url"),
        ("", ", connect_timeout: 0", "connect_timeout"),
        ("", ", read_timeout: 301", "read_timeout"),
        ("", ", read_timeout: soon", "read_timeout"),
    ],
)
def test_a_bad_proxy_or_timeout_is_refused_naming_the_field_and_nothing_is_stored(
    fake_provider, write, proxy, config, field
):
    with pytest.raises(ConfigError) as caught:
        config_apply(config_load(write(proxy=proxy, config=config)))

    assert field in str(caught.value)
    assert not Connector.objects.exists()


INTEGRATION = """
connectors:
  - name: fake-cloud
    provider: fake
    auth: {{kind: none}}
    config: {{world: w1}}
integrations:
  - name: acme
    connector: fake-cloud
    workspace: acme
    writeback_mode: {mode}
"""


def test_an_integrations_write_back_mode_is_declared_and_applied_idempotently(
    fake_provider, tmp_path
):
    from integrations.models import Integration

    path = tmp_path / "lantern.yaml"
    path.write_text(textwrap.dedent(INTEGRATION.format(mode="commit")).lstrip("\n"))
    config_apply(config_load(path))
    again = config_apply(config_load(path))

    assert Integration.objects.get(name="acme").writeback_mode == "commit"
    assert [o.action for o in again.outcomes] == ["unchanged", "unchanged"]


def test_an_unknown_write_back_mode_is_refused_naming_the_key(fake_provider, tmp_path):
    path = tmp_path / "lantern.yaml"
    path.write_text(textwrap.dedent(INTEGRATION.format(mode="force")).lstrip("\n"))

    with pytest.raises(ConfigError) as caught:
        config_load(path)

    assert "writeback_mode: must be pull_request or commit" in str(caught.value)
