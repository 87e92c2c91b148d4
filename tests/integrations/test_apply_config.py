"""``manage.py apply_config``: declarative, validated up front, all or nothing, idempotent."""

import textwrap
from datetime import date
from pathlib import Path

import jmespath
import pytest
from django.core.management import CommandError, call_command
from jmespath.exceptions import JMESPathError

from catalog.models import Scope
from integrations import services
from integrations.config import ConfigError, config_apply, config_load
from integrations.models import Connector, Integration
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import provider as cloud
from tests.integrations.fake_provider import FakeProvider
from tests.integrations.test_private_ca import certificate_pem

pytestmark = pytest.mark.django_db

BASIC = """
connectors:
  - name: fake-cloud
    provider: fake
    auth: {kind: none}
    config: {world: w1}
integrations:
  - name: acme
    connector: fake-cloud
    workspace: acme
    registration: register_and_merge
    kind: Component
    type: service
    correlation: [{ingested: name, catalog: metadata.name, operator: equals}]
    field_mappings: {metadata.description: description}
    secondary_kinds: [pull_requests]
    update_frequency: 6h
    start_date: 2024-01-01
    auto_import: true
    state: enabled
    description: "Acme *repositories*"
    labels: [team-a]
"""


class TokenProvider(FakeProvider):
    """The fake provider, accepting the credentials Bitbucket connectors use."""

    key = "fake_token"
    name = "Fake with tokens"
    auth_kinds = (cloud.WORKSPACE_ACCESS_TOKEN, cloud.API_TOKEN, cloud.OAUTH_CONSUMER)


@pytest.fixture
def token_provider():
    registry.register(TokenProvider)
    yield TokenProvider
    registry.unregister(TokenProvider.key)


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "lantern.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in {path}")


def refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config_apply(config_load(path))
    return caught.value


def test_apply_creates_the_connectors_and_integrations_the_file_declares(fake_provider, write):
    summary = config_apply(config_load(write(BASIC)))

    assert [str(outcome) for outcome in summary.outcomes] == [
        "connector fake-cloud: created",
        "integration acme: created",
    ]
    connector = Connector.objects.get(name="fake-cloud")
    assert (connector.provider, connector.auth_kind) == ("fake", "none")
    assert connector.config == {"world": "w1"} and not connector.has_secrets
    integration = Integration.objects.get(name="acme")
    assert integration.connector == connector and integration.provider == "fake"
    assert integration.target == {"workspace": "acme"}
    assert (integration.entity_kind, integration.entity_type) == ("Component", "service")
    assert integration.secondary_kinds == ["pull_requests"]
    assert integration.update_frequency == 360
    assert integration.start_date == date(2024, 1, 1)
    assert integration.auto_import is True and integration.state == "enabled"
    assert integration.description == "Acme *repositories*" and integration.labels == ["team-a"]
    assert [(m.catalog_path, m.expression) for m in integration.field_mappings.all()] == [
        ("metadata.description", "description")
    ]
    assert [
        (r.ingested_path, r.catalog_path, r.operator) for r in integration.correlation_rules.all()
    ] == [("name", "metadata.name", "equals")]


def test_reapplying_the_same_file_changes_nothing(fake_provider, write):
    path = write(BASIC)
    config_apply(config_load(path))
    connector_stamp = Connector.objects.get().updated_at
    integration = Integration.objects.get()
    rule_ids = list(integration.correlation_rules.values_list("pk", flat=True))

    summary = config_apply(config_load(path))

    assert not summary.changed
    assert summary.lines()[-1] == "0 created, 0 updated, 2 unchanged."
    assert Connector.objects.get().updated_at == connector_stamp
    assert Integration.objects.get().updated_at == integration.updated_at
    assert list(integration.correlation_rules.values_list("pk", flat=True)) == rule_ids


def test_reapplying_after_an_edit_updates_only_what_changed(fake_provider, write):
    config_apply(config_load(write(BASIC)))
    edited = BASIC.replace('"Acme *repositories*"', "Acme").replace("6h", "12h")

    summary = config_apply(config_load(write(edited)))

    assert str(summary.of("integration", "acme")) == (
        "integration acme: updated (description, update_frequency)"
    )
    assert str(summary.of("connector", "fake-cloud")) == "connector fake-cloud: unchanged"
    integration = Integration.objects.get()
    assert (integration.description, integration.update_frequency) == ("Acme", 720)


def test_settings_the_file_omits_are_left_as_they_are_on_update(fake_provider, write):
    path = write(BASIC.replace("    state: enabled\n", ""))
    config_apply(config_load(path))
    services.integration_suspend(integration=Integration.objects.get())

    summary = config_apply(config_load(path))

    assert not summary.changed
    assert Integration.objects.get().state == "suspended"


def test_an_empty_field_mapping_list_is_kept_empty_and_reapplies_unchanged(fake_provider, write):
    path = write(BASIC.replace("{metadata.description: description}", "{}"))
    config_apply(config_load(path))
    assert not Integration.objects.get().field_mappings.exists()
    assert not config_apply(config_load(path)).changed


def test_integration_create_keeps_an_explicit_empty_field_mapping(make_integration):
    integration = make_integration(field_mappings={})
    assert not integration.field_mappings.exists()


def test_a_file_with_one_invalid_integration_applies_nothing(fake_provider, write):
    path = write(
        BASIC
        + """\
  - name: second
    connector: fake-cloud
    registration: sometimes
"""
    )
    error = refused(path)

    line = line_of(path, "registration: sometimes")
    assert f"{path}:{line}: integration second.registration: must be one of" in str(error)
    assert not Connector.objects.exists()
    assert not Integration.objects.exists()


def test_a_change_a_service_refuses_rolls_back_the_whole_file(fake_provider, write):
    config_apply(config_load(write(BASIC)))
    edited = BASIC.replace('"Acme *repositories*"', "New text").replace(
        "[pull_requests]", "[pull_requests, commits]"
    )
    path = write(edited)

    error = refused(path)

    line = line_of(path, "secondary_kinds:")
    assert f"{path}:{line}: integration acme: secondary_kinds: Secondary kinds are locked" in str(
        error
    )
    integration = Integration.objects.get()
    assert integration.description == "Acme *repositories*"
    assert integration.secondary_kinds == ["pull_requests"]


def test_unknown_keys_are_refused_with_their_line(fake_provider, write):
    path = write(
        BASIC.replace("    auto_import: true\n", "    auto_import: true\n    colour: blue\n")
    )

    error = refused(path)

    line = line_of(path, "colour: blue")
    assert str(error).startswith(f"{path}:{line}: integration acme: unknown key 'colour'")
    assert not Integration.objects.exists()


def test_every_problem_is_reported_at_once_in_line_order(fake_provider, write):
    path = write(
        BASIC.replace("kind: Component", "kind: 'not a kind'").replace("6h", "5h")
        + "unexpected: true\n"
    )

    error = refused(path)

    assert [line for line, _ in error.errors] == [
        line_of(path, "kind: 'not a kind'"),
        line_of(path, "update_frequency: 5h"),
        line_of(path, "unexpected: true"),
    ]


def test_invalid_yaml_is_refused_with_its_line(write):
    path = write("connectors:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: invalid YAML"):
        config_load(path)


def test_invalid_jmespath_is_refused_with_the_parser_message_and_line(fake_provider, write):
    path = write(BASIC.replace("{metadata.description: description}", '{a.b: "description["}'))
    with pytest.raises(JMESPathError) as parser_error:
        jmespath.compile("description[")

    error = refused(path)

    line = line_of(path, "field_mappings:")
    assert f"{path}:{line}: integration acme.field_mappings.a.b: " in str(error)
    assert str(parser_error.value) in str(error)


def test_invalid_correlation_expression_is_refused_with_its_line(fake_provider, write):
    path = write(BASIC.replace("catalog: metadata.name,", "catalog: 'metadata.[name',"))
    error = refused(path)
    assert error.errors[0][0] == line_of(path, "correlation:")
    assert "correlation[0].catalog: Invalid JMESPath expression 'metadata.[name'" in str(error)


def test_invalid_repository_pattern_is_refused(token_provider, write):
    path = write(
        BASIC.replace("provider: fake", "provider: fake_token").replace(
            "workspace: acme", "workspace: acme\n    repository_pattern: '(unclosed'"
        )
    )
    error = refused(path)
    assert f"{line_of(path, 'repository_pattern')}: integration acme.repository_pattern" in str(
        error
    )
    assert "invalid regular expression" in str(error)


def test_target_keys_the_provider_does_not_know_are_refused(fake_provider, write):
    path = write(BASIC.replace("workspace: acme", "projects: [PRJ]"))
    error = refused(path)
    assert f"{line_of(path, 'projects: [PRJ]')}: integration acme.projects: unknown" in str(error)


def test_a_literal_secret_is_refused_and_never_echoed(token_provider, write):
    path = write(
        """
        connectors:
          - name: cloud
            provider: fake_token
            auth: {kind: workspace_access_token, token: hunter2-literal}
        """
    )
    error = refused(path)
    assert f"{path}:{line_of(path, 'auth:')}: connector cloud.auth.token: a secret written" in str(
        error
    )
    assert "${SOME_VARIABLE}" in str(error)
    assert "hunter2" not in str(error)
    assert not Connector.objects.exists()


def test_an_unset_environment_variable_is_refused_by_name(token_provider, write, monkeypatch):
    monkeypatch.delenv("LANTERN_TEST_MISSING_TOKEN", raising=False)
    path = write(
        """
        connectors:
          - name: cloud
            provider: fake_token
            auth:
              kind: workspace_access_token
              token: "${LANTERN_TEST_MISSING_TOKEN}"
        """
    )
    error = refused(path)
    assert (
        f"{path}:{line_of(path, 'token:')}: connector cloud.auth.token: the environment "
        "variable LANTERN_TEST_MISSING_TOKEN is not set"
    ) in str(error)


def test_secrets_come_from_the_environment_and_are_stored_encrypted(
    token_provider, write, monkeypatch
):
    monkeypatch.setenv("LANTERN_TEST_TOKEN", "tok-plaintext-123")
    monkeypatch.setenv("LANTERN_TEST_EMAIL", "ada@example.com")
    path = write(
        """
        connectors:
          - name: cloud
            provider: fake_token
            base_url: https://api.example.test/2.0/
            auth:
              kind: api_token
              email: "${LANTERN_TEST_EMAIL}"
              token: "${LANTERN_TEST_TOKEN}"
        """
    )
    config_apply(config_load(path))

    connector = Connector.objects.get()
    assert "tok-plaintext-123" not in connector.secrets_encrypted
    assert connector.secrets == {"token": "tok-plaintext-123"}
    assert connector.config == {"email": "ada@example.com"}
    assert connector.base_url == "https://api.example.test/2.0"
    assert connector.auth_kind == "api_token"

    stored = connector.secrets_encrypted
    assert not config_apply(config_load(path)).changed
    connector.refresh_from_db()
    assert connector.secrets_encrypted == stored  # not re-encrypted when unchanged

    monkeypatch.setenv("LANTERN_TEST_TOKEN", "tok-rotated-456")
    summary = config_apply(config_load(path))
    assert str(summary.of("connector", "cloud")) == "connector cloud: updated (secrets)"
    connector.refresh_from_db()
    assert connector.secrets == {"token": "tok-rotated-456"}


def test_a_token_pool_is_stored_as_a_list_of_secrets(token_provider, write, monkeypatch):
    monkeypatch.setenv("TOKEN_A", "a-123")
    monkeypatch.setenv("TOKEN_B", "b-456")
    path = write(
        """
        connectors:
          - name: cloud
            provider: fake_token
            auth:
              kind: workspace_access_token
              tokens: ["${TOKEN_A}", "${TOKEN_B}"]
        """
    )
    config_apply(config_load(path))
    assert Connector.objects.get().secrets == {"tokens": ["a-123", "b-456"]}


def test_oauth_runtime_tokens_survive_a_reapply(token_provider, write, monkeypatch):
    monkeypatch.setenv("CLIENT_SECRET", "shh-789")
    path = write(
        """
        connectors:
          - name: cloud
            provider: fake_token
            auth: {kind: oauth_consumer, client_id: key-1, client_secret: "${CLIENT_SECRET}"}
        """
    )
    config_apply(config_load(path))
    connector = Connector.objects.get()
    assert connector.config == {"client_id": "key-1"}
    services.connector_update(
        connector=connector, secrets={**connector.secrets, "access_token": "runtime"}
    )

    assert not config_apply(config_load(path)).changed
    assert Connector.objects.get().secrets == {
        "client_secret": "shh-789",
        "access_token": "runtime",
    }


def test_auth_keys_of_another_kind_are_refused(token_provider, write, monkeypatch):
    monkeypatch.setenv("T", "x")
    path = write(
        """
        connectors:
          - name: cloud
            provider: fake_token
            auth: {kind: workspace_access_token, token: "${T}", email: a@b.c}
        """
    )
    assert "unknown key 'email' for workspace_access_token" in str(refused(path))


def test_an_auth_kind_the_provider_does_not_support_is_refused(fake_provider, write):
    path = write(
        BASIC.replace(
            "auth: {kind: none}",
            'auth: {kind: oauth_consumer, client_id: x, client_secret: "${S}"}',
        )
    )
    assert "Fake supports these auth kinds: none" in str(refused(path))


def test_ca_pem_file_is_read_relative_to_the_yaml_file(token_provider, write, monkeypatch):
    monkeypatch.setenv("T", "x")
    pem = certificate_pem(ca=True)  # a valid CA: connectors refuse anything else
    write(pem, name="ca.pem")
    path = write(
        """
        connectors:
          - name: dc
            provider: fake_token
            ca_pem_file: ./ca.pem
            auth: {kind: workspace_access_token, token: "${T}"}
        """
    )
    config_apply(config_load(path))
    assert Connector.objects.get().ca_pem == pem


def test_a_missing_ca_pem_file_is_refused(token_provider, write, monkeypatch):
    monkeypatch.setenv("T", "x")
    path = write(
        """
        connectors:
          - name: dc
            provider: fake_token
            ca_pem_file: ./missing.pem
            auth: {kind: workspace_access_token, token: "${T}"}
        """
    )
    assert f"{line_of(path, 'ca_pem_file')}: connector dc.ca_pem_file: cannot read" in str(
        refused(path)
    )


def test_scope_paths_must_exist(fake_provider, write):
    account = Scope.objects.create(name="Acme", slug="acme", kind="account")
    Scope.objects.create(name="Web", slug="web", kind="org", parent=account)
    config_apply(config_load(write(BASIC.replace("    state:", "    scope: acme/web\n    state:"))))
    assert Integration.objects.get().scope.path == "acme/web"

    path = write(BASIC.replace("    state:", "    scope: nowhere\n    state:"))
    assert f"{line_of(path, 'scope: nowhere')}: integration acme.scope: no scope" in str(
        refused(path)
    )


def test_an_integration_may_use_a_connector_already_in_the_database(fake_provider, write):
    services.connector_create(name="existing", provider="fake", auth_kind="none")
    path = write(
        """
        integrations:
          - name: solo
            connector: existing
        """
    )
    config_apply(config_load(path))
    integration = Integration.objects.get()
    assert integration.connector.name == "existing"
    assert integration.secondary_kinds == ["pull_requests", "commits"]  # the service's default


def test_an_unknown_connector_is_refused(fake_provider, write):
    path = write("integrations:\n  - name: solo\n    connector: nowhere\n")
    assert f"{path}:3: integration solo.connector: no connector named 'nowhere'" in str(
        refused(path)
    )


def test_type_is_refused_when_the_integration_only_merges(fake_provider, write):
    path = write(BASIC.replace("register_and_merge", "merge"))
    assert f"{line_of(path, 'type: service')}: integration acme.type: the type is not" in str(
        refused(path)
    )


def test_duplicate_names_are_refused(fake_provider, write):
    path = write(BASIC + BASIC.split("integrations:\n", 1)[1])
    assert "integration acme is declared twice (first on line 7)" in str(refused(path))


def test_dry_run_reports_changes_and_writes_nothing(fake_provider, write):
    summary = config_apply(config_load(write(BASIC)), dry_run=True)
    assert summary.count("created") == 2
    assert "dry run" in summary.lines()[-1]
    assert not Connector.objects.exists()


def test_the_command_prints_a_summary_and_refuses_invalid_files(
    fake_provider, write, capsys, monkeypatch
):
    path = write(BASIC)
    call_command("apply_config", str(path))
    assert capsys.readouterr().out.splitlines() == [
        "connector fake-cloud: created",
        "integration acme: created",
        "2 created, 0 updated, 0 unchanged.",
    ]
    call_command("apply_config", str(path))
    assert "integration acme: unchanged" in capsys.readouterr().out

    bad = write(BASIC.replace("auth: {kind: none}", "auth: {kind: none}\n    secret: x"), "b.yaml")
    with pytest.raises(CommandError, match=r"Nothing was applied\.\n.*b\.yaml:5: "):
        call_command("apply_config", str(bad))


def test_a_file_expanding_through_aliases_is_refused_as_invalid_yaml(write):
    """Bounded like catalog files: a billion-laughs file is refused quickly, not expanded."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"invalid YAML.*more than 100000 values"):
        config_load(path)


def test_a_start_date_in_the_future_is_refused_with_its_line(fake_provider, write):
    path = write(BASIC.replace("start_date: 2024-01-01", "start_date: 2099-01-01"))

    error = refused(path)

    line = line_of(path, "start_date: 2099-01-01")
    assert f"{path}:{line}: integration acme: start_date: 2099-01-01 is in the future" in str(error)
    assert not Integration.objects.exists() and not Connector.objects.exists()
